# The module against a local moto server (tests/infra/test_apply_moto.py).
# Not for real AWS: credentials are fake and every endpoint is overridden.
#
#   moto_server -H 127.0.0.1 -p 5000 &
#   terraform init && terraform apply -var endpoint=http://127.0.0.1:5000

terraform {
  required_version = ">= 1.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }
  }
}

variable "endpoint" {
  description = "URL of the moto server, e.g. http://127.0.0.1:5000."
  type        = string
}

variable "bucket_name" {
  description = "Bucket to create."
  type        = string
  default     = "documee-moto-test"
}

variable "lambda_zip_path" {
  description = "Deployment zip for the compaction Lambda; null = none."
  type        = string
  default     = null
}

variable "compaction_schedule_expression" {
  description = "Compaction schedule; null = none."
  type        = string
  default     = null
}

provider "aws" {
  region     = "us-east-1"
  access_key = "test"
  secret_key = "test"

  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    s3     = var.endpoint
    iam    = var.endpoint
    sts    = var.endpoint
    lambda = var.endpoint
    events = var.endpoint
    logs   = var.endpoint
  }
}

module "documee_remote" {
  source = "../../modules/documee-remote"

  bucket_name   = var.bucket_name
  force_destroy = true

  teams = {
    team-a = { prefix = "team-a/" }
    team-b = { prefix = "team-b/" }
  }

  lambda_zip_path                = var.lambda_zip_path
  compaction_schedule_expression = var.compaction_schedule_expression
}

output "bucket_name" {
  description = "The bucket."
  value       = module.documee_remote.bucket_name
}

output "policy_documents" {
  description = "team => { reader, analyser, admin } policy JSON."
  value       = module.documee_remote.policy_documents
}

output "role_arns" {
  description = "team => { reader, analyser, admin } role ARN."
  value       = module.documee_remote.role_arns
}

output "lambda_function_arns" {
  description = "team => compaction Lambda ARN."
  value       = module.documee_remote.lambda_function_arns
}

output "compaction_rule_arns" {
  description = "team => schedule rule ARN."
  value       = module.documee_remote.compaction_rule_arns
}
