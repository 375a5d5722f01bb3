terraform {
  # optional() object attributes need 1.3; the module's own tests use
  # mock_provider, which needs 1.7.
  required_version = ">= 1.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }
  }
}
