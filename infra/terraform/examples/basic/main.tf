# Two teams sharing one bucket, SSE-S3, no Lambda. See ../../README.md.
#
#   terraform init
#   terraform apply -var bucket_name=my-org-documee
#
# Team A's analysers then use DOCUMEE_STORE_URL=s3://my-org-documee/team-a/
# after assuming outputs.role_arns["team-a"]["analyser"].

terraform {
  required_version = ">= 1.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region of the bucket."
  type        = string
  default     = "eu-west-1"
}

variable "bucket_name" {
  description = "Globally unique bucket name."
  type        = string
}

variable "lambda_zip_path" {
  description = "Deployment zip of documee_remote for the compaction Lambda; null = none."
  type        = string
  default     = null
}

module "documee_remote" {
  source = "../../modules/documee-remote"

  bucket_name = var.bucket_name

  teams = {
    team-a = { prefix = "team-a/" }
    team-b = {
      prefix = "team-b/"
      # Example: only this role may assume team B's analyser role.
      # analyser_principals = ["arn:aws:iam::123456789012:role/team-b-ci"]
    }
  }

  noncurrent_version_expiration_days = 30
  stale_delta_expiration_days        = 30
  stale_lease_expiration_days        = 2

  lambda_zip_path                = var.lambda_zip_path
  compaction_schedule_expression = var.lambda_zip_path == null ? null : "rate(6 hours)"

  tags = {
    project = "documee-remote"
  }
}

output "store_urls" {
  description = "team => store URL."
  value       = module.documee_remote.store_urls
}

output "role_arns" {
  description = "team => { reader, analyser, admin } role ARN."
  value       = module.documee_remote.role_arns
}
