data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  # The policy documents live outside the module so that the Python tests
  # render exactly the files terraform renders (tests/infra/).
  policy_dir = "${path.module}/../../../policies"

  partition    = data.aws_partition.current.partition
  account_root = "arn:${local.partition}:iam::${data.aws_caller_identity.current.account_id}:root"

  # Known at plan time, also when the bucket already exists.
  bucket_arn = "arn:${local.partition}:s3:::${var.bucket_name}"
  # Referencing the bucket resource orders its settings after its creation.
  bucket_id = var.create_bucket ? aws_s3_bucket.this[0].bucket : var.bucket_name

  use_kms = var.kms_key_arn != null

  # The library tags journal deltas and leases with this key so that lifecycle
  # rules can find them: a lifecycle prefix cannot match the "_journal/" infix.
  kind_tag_key = "documee-remote-kind"

  bucket_policy_json = jsonencode(jsondecode(templatefile("${local.policy_dir}/bucket.json.tftpl", {
    bucket_arn = local.bucket_arn
  })))
}

resource "aws_s3_bucket" "this" {
  count = var.create_bucket ? 1 : 0

  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

# ACLs disabled: the bucket owner owns every object, access is IAM-only.
resource "aws_s3_bucket_ownership_controls" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = local.bucket_id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  count = var.create_bucket ? 1 : 0

  bucket                  = local.bucket_id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Versioning is what makes a bad compaction or gc recoverable; noncurrent
# versions expire after var.noncurrent_version_expiration_days.
resource "aws_s3_bucket_versioning" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = local.bucket_id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = local.bucket_id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    # An S3 bucket key cuts KMS calls (and cost) by ~99%; meaningless for SSE-S3.
    bucket_key_enabled = local.use_kms
  }
}

resource "aws_s3_bucket_policy" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = local.bucket_id
  policy = local.bucket_policy_json

  # S3 refuses a policy while the public access block is being changed.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = local.bucket_id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    # Remove delete markers once no noncurrent version is left behind them.
    expiration {
      expired_object_delete_marker = true
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  dynamic "rule" {
    for_each = var.stale_delta_expiration_days == null ? [] : [var.stale_delta_expiration_days]

    content {
      id     = "expire-stale-journal-deltas"
      status = "Enabled"

      filter {
        tag {
          key   = local.kind_tag_key
          value = "delta"
        }
      }

      expiration {
        days = rule.value
      }
    }
  }

  dynamic "rule" {
    for_each = var.stale_lease_expiration_days == null ? [] : [var.stale_lease_expiration_days]

    content {
      id     = "expire-stale-leases"
      status = "Enabled"

      filter {
        tag {
          key   = local.kind_tag_key
          value = "lease"
        }
      }

      expiration {
        days = rule.value
      }
    }
  }

  # Lifecycle rules on an unversioned bucket would delete instead of
  # creating noncurrent versions.
  depends_on = [aws_s3_bucket_versioning.this]
}
