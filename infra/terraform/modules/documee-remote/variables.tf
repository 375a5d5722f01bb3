# ---------------------------------------------------------------------------
# Bucket
# ---------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket holding the stores. Created when create_bucket is true, otherwise it must already exist."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !strcontains(var.bucket_name, "..")
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 characters, lowercase letters, digits, '.' and '-'."
  }
}

variable "create_bucket" {
  description = "Create the bucket and manage its versioning, encryption, public access block, ownership, TLS-only policy and lifecycle. When false, only IAM (and the Lambda) are created; apply outputs.bucket_policy_json and the lifecycle rules described in the README to the existing bucket yourself."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete a non-empty bucket (every object version). Keep false outside tests."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "ARN of a customer-managed KMS key for default encryption (aws:kms with an S3 bucket key). null = SSE-S3 (AES256). The key policy must let this account's IAM policies grant use of the key."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:[a-z-]+:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>), not an alias."
  }
}

# ---------------------------------------------------------------------------
# Teams
# ---------------------------------------------------------------------------

variable "teams" {
  description = <<-EOT
    One entry per team sharing the bucket: team name => settings.
      prefix               store root inside the bucket, e.g. "team-a/" (ends with '/', no wildcards).
                           The team's store URL is s3://<bucket>/<prefix>.
      reader_principals    ARNs allowed to assume the team's reader role.
      analyser_principals  ARNs allowed to assume the team's analyser role.
      admin_principals     ARNs allowed to assume the team's admin role.
    An empty principal list falls back to trusted_principal_arns, then to this account's root
    (i.e. any IAM identity of the account whose own policy allows sts:AssumeRole on the role).
    Prefixes must be distinct and none may contain another (a grant on "a/" covers "a/b/").
  EOT
  type = map(object({
    prefix              = string
    reader_principals   = optional(list(string), [])
    analyser_principals = optional(list(string), [])
    admin_principals    = optional(list(string), [])
  }))

  validation {
    condition     = length(var.teams) > 0
    error_message = "teams must have at least one entry."
  }

  validation {
    condition     = alltrue([for name in keys(var.teams) : can(regex("^[a-z0-9][a-z0-9-]{0,23}$", name))])
    error_message = "Team names must be 1-24 characters of lowercase letters, digits and '-', starting with a letter or digit (they are part of IAM role and Lambda names)."
  }

  validation {
    # Segments as documee_remote.layout accepts them, and nothing IAM would read
    # as a wildcard ('*', '?') or a policy variable ('$').
    condition     = alltrue([for t in values(var.teams) : can(regex("^([A-Za-z0-9][A-Za-z0-9._-]*/)+$", t.prefix)) && length(t.prefix) <= 200])
    error_message = "Each team prefix must be one or more '/'-terminated segments of letters, digits, '.', '_' and '-' (each starting with a letter or digit), e.g. \"team-a/\", at most 200 characters."
  }

  validation {
    condition = alltrue(flatten([
      for a, ta in var.teams : [
        for b, tb in var.teams : a == b || !startswith(tb.prefix, ta.prefix)
      ]
    ]))
    error_message = "Team prefixes must be distinct and no prefix may start with another team's prefix."
  }
}

variable "trusted_principal_arns" {
  description = "Principals allowed to assume every team role whose own principal list is empty. Empty = this account's root."
  type        = list(string)
  default     = []
}

variable "create_roles" {
  description = "Create a reader, analyser and admin IAM role per team. The managed policies are created either way, to attach to your own roles, groups or permission sets."
  type        = bool
  default     = true
}

variable "grant_bucket_wide_list" {
  description = "Also grant every team role an unconditioned s3:ListBucket on the bucket. S3 answers a GET/HEAD of a missing key with 404 only to callers that may list the bucket, and a ListBucket grant scoped by an s3:prefix condition may not count, giving 403 instead. Turning this on lets every team see other teams' key names (not contents)."
  type        = bool
  default     = false
}

variable "name_prefix" {
  description = "Prefix of IAM role/policy, Lambda and EventBridge rule names."
  type        = string
  default     = "documee-remote"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,19}$", var.name_prefix))
    error_message = "name_prefix must be 1-20 characters of letters, digits and '-'."
  }
}

variable "iam_path" {
  description = "Path for the IAM roles and policies."
  type        = string
  default     = "/"

  validation {
    condition     = can(regex("^/([A-Za-z0-9_+=,.@-]+/)*$", var.iam_path))
    error_message = "iam_path must start and end with '/'."
  }
}

variable "permissions_boundary_arn" {
  description = "Optional permissions boundary for every role the module creates."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------

variable "noncurrent_version_expiration_days" {
  description = "Days after which a noncurrent object version (an overwritten or deleted object) is deleted for good. This is the recovery window."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number >= 1."
  }
}

variable "stale_delta_expiration_days" {
  description = "Days after which a journal delta (object tagged documee-remote-kind=delta) expires. Compaction deletes deltas normally; an expired delta that was never compacted is lost (recoverable as a noncurrent version until that expires), so keep this far above the compaction interval. null = no rule."
  type        = number
  default     = 30

  validation {
    condition     = var.stale_delta_expiration_days == null || try(var.stale_delta_expiration_days >= 1 && floor(var.stale_delta_expiration_days) == var.stale_delta_expiration_days, false)
    error_message = "stale_delta_expiration_days must be null or a whole number >= 1."
  }
}

variable "stale_lease_expiration_days" {
  description = "Days after which a lease object (tagged documee-remote-kind=lease) expires. A held lease is renewed by overwrite, which restarts its age. null = no rule."
  type        = number
  default     = 2

  validation {
    condition     = var.stale_lease_expiration_days == null || try(var.stale_lease_expiration_days >= 1 && floor(var.stale_lease_expiration_days) == var.stale_lease_expiration_days, false)
    error_message = "stale_lease_expiration_days must be null or a whole number >= 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which an unfinished multipart upload is aborted and its parts deleted."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "abort_incomplete_multipart_upload_days must be a whole number >= 1."
  }
}

# ---------------------------------------------------------------------------
# Compaction Lambda
# ---------------------------------------------------------------------------

variable "lambda_zip_path" {
  description = "Path to a deployment zip containing documee_remote and its dependencies (handler documee_remote.aws_lambda.handler). null = no Lambda. One function per team is created, with DOCUMEE_STORE_URL=s3://<bucket>/<prefix> and the team's admin policy."
  type        = string
  default     = null
}

variable "lambda_memory_size" {
  description = "Memory of the compaction Lambda, in MB."
  type        = number
  default     = 512

  validation {
    condition     = var.lambda_memory_size >= 128 && var.lambda_memory_size <= 10240
    error_message = "lambda_memory_size must be between 128 and 10240."
  }
}

variable "lambda_timeout" {
  description = "Timeout of the compaction Lambda, in seconds."
  type        = number
  default     = 300

  validation {
    condition     = var.lambda_timeout >= 1 && var.lambda_timeout <= 900
    error_message = "lambda_timeout must be between 1 and 900."
  }
}

variable "lambda_environment" {
  description = "Extra environment variables for the compaction Lambda (DOCUMEE_STORE_URL is set by the module and cannot be overridden)."
  type        = map(string)
  default     = {}
}

variable "lambda_log_retention_days" {
  description = "Retention of the compaction Lambda's CloudWatch log group."
  type        = number
  default     = 30
}

variable "compaction_schedule_expression" {
  description = "EventBridge schedule for the compaction Lambda, e.g. \"rate(1 hour)\" or \"cron(0 3 * * ? *)\". null = no schedule. Ignored without lambda_zip_path."
  type        = string
  default     = null

  validation {
    condition = var.compaction_schedule_expression == null || can(regex(
      "^(rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\)|cron\\(\\S+ \\S+ \\S+ \\S+ \\S+ \\S+\\))$",
      var.compaction_schedule_expression,
    ))
    error_message = "compaction_schedule_expression must be null, rate(<n> <minute(s)|hour(s)|day(s)>) or cron(<6 fields>)."
  }
}

variable "compaction_event" {
  description = "JSON-encodable event the schedule sends to the compaction Lambda."
  type        = any
  default     = { action = "compact" }
}

variable "tags" {
  description = "Tags for every taggable resource."
  type        = map(string)
  default     = {}
}
