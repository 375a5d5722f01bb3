output "bucket_name" {
  description = "The bucket."
  value       = local.bucket_id
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = local.bucket_arn
}

output "store_urls" {
  description = "team => s3://<bucket>/<prefix>, the store URL its clients use."
  value       = local.store_urls
}

output "kind_tag_key" {
  description = "Object tag key the library sets to \"delta\" or \"lease\"; the lifecycle rules filter on it."
  value       = local.kind_tag_key
}

output "bucket_policy_json" {
  description = "The TLS-only bucket policy (applied when create_bucket is true; merge it into your bucket's policy otherwise)."
  value       = local.bucket_policy_json
}

output "policy_documents" {
  description = "team => { reader, analyser, admin } identity policy JSON."
  value = {
    for team in keys(var.teams) : team => {
      for kind in local.role_kinds : kind => local.policy_documents["${team}/${kind}"]
    }
  }
}

output "policy_arns" {
  description = "team => { reader, analyser, admin } managed policy ARN, to attach to your own roles or groups too."
  value = {
    for team in keys(var.teams) : team => {
      for kind in local.role_kinds : kind => aws_iam_policy.access["${team}/${kind}"].arn
    }
  }
}

output "kms_policy_arns" {
  description = "{ read, write } KMS policy ARNs when kms_key_arn is set, else {}. Attach read to readers, write to analysers/admins."
  value       = { for mode, p in aws_iam_policy.kms : mode => p.arn }
}

output "role_arns" {
  description = "team => { reader, analyser, admin } role ARN ({} when create_roles is false)."
  value = var.create_roles ? {
    for team in keys(var.teams) : team => {
      for kind in local.role_kinds : kind => aws_iam_role.team["${team}/${kind}"].arn
    }
  } : {}
}

output "lambda_function_arns" {
  description = "team => compaction Lambda ARN ({} without lambda_zip_path)."
  value       = { for team, f in aws_lambda_function.compactor : team => f.arn }
}

output "lambda_role_arns" {
  description = "team => compaction Lambda role ARN."
  value       = { for team, r in aws_iam_role.compactor : team => r.arn }
}

output "compaction_rule_arns" {
  description = "team => EventBridge schedule rule ARN ({} without a schedule)."
  value       = { for team, r in aws_cloudwatch_event_rule.compaction : team => r.arn }
}
