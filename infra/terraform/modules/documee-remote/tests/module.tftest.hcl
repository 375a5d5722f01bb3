# Offline tests of the module: every AWS call is answered by mock_provider.
# Run from the module directory:
#   terraform init -backend=false -plugin-dir "$DOCUMEE_TF_PLUGIN_DIR" && terraform test
# (tests/infra/test_terraform_static.py does this in a temporary copy).

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = {
      partition  = "aws"
      dns_suffix = "amazonaws.com"
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }
}

variables {
  bucket_name = "documee-test-bucket"
  teams = {
    team-a = { prefix = "team-a/" }
    team-b = { prefix = "team-b/" }
  }
}

run "bucket_is_versioned_encrypted_private_and_tls_only" {
  command = plan

  assert {
    condition     = aws_s3_bucket.this[0].bucket == "documee-test-bucket"
    error_message = "the bucket is not created with bucket_name"
  }

  assert {
    condition     = aws_s3_bucket.this[0].force_destroy == false
    error_message = "force_destroy must default to false"
  }

  assert {
    condition     = aws_s3_bucket_versioning.this[0].versioning_configuration[0].status == "Enabled"
    error_message = "versioning is not enabled"
  }

  assert {
    condition = alltrue([
      for r in aws_s3_bucket_server_side_encryption_configuration.this[0].rule :
      r.apply_server_side_encryption_by_default[0].sse_algorithm == "AES256" && r.bucket_key_enabled == false
    ]) && length(aws_s3_bucket_server_side_encryption_configuration.this[0].rule) == 1
    error_message = "without kms_key_arn the default encryption must be SSE-S3 (AES256)"
  }

  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.this[0].block_public_acls,
      aws_s3_bucket_public_access_block.this[0].block_public_policy,
      aws_s3_bucket_public_access_block.this[0].ignore_public_acls,
      aws_s3_bucket_public_access_block.this[0].restrict_public_buckets,
    ])
    error_message = "every public access block setting must be true"
  }

  assert {
    condition     = aws_s3_bucket_ownership_controls.this[0].rule[0].object_ownership == "BucketOwnerEnforced"
    error_message = "ACLs must be disabled (BucketOwnerEnforced)"
  }

  assert {
    condition = anytrue([
      for s in jsondecode(aws_s3_bucket_policy.this[0].policy).Statement :
      s.Effect == "Deny" && s.Principal == "*" && s.Action == "s3:*"
      && try(s.Condition.Bool["aws:SecureTransport"], null) == "false"
      && toset(s.Resource) == toset(["arn:aws:s3:::documee-test-bucket", "arn:aws:s3:::documee-test-bucket/*"])
    ])
    error_message = "the bucket policy must deny every request made without TLS, on the bucket and its objects"
  }

  assert {
    condition     = output.bucket_policy_json == aws_s3_bucket_policy.this[0].policy
    error_message = "output bucket_policy_json differs from the applied bucket policy"
  }
}

run "lifecycle_expires_noncurrent_versions_stale_deltas_and_leases" {
  command = plan

  assert {
    condition = toset([for r in aws_s3_bucket_lifecycle_configuration.this[0].rule : r.id]) == toset([
      "expire-noncurrent-versions", "expire-stale-journal-deltas", "expire-stale-leases",
    ])
    error_message = "unexpected lifecycle rule set"
  }

  assert {
    condition     = alltrue([for r in aws_s3_bucket_lifecycle_configuration.this[0].rule : r.status == "Enabled"])
    error_message = "every lifecycle rule must be enabled"
  }

  assert {
    condition = [
      for r in aws_s3_bucket_lifecycle_configuration.this[0].rule : {
        noncurrent_days = r.noncurrent_version_expiration[0].noncurrent_days
        delete_markers  = r.expiration[0].expired_object_delete_marker
        abort_days      = r.abort_incomplete_multipart_upload[0].days_after_initiation
      } if r.id == "expire-noncurrent-versions"
    ] == [{ noncurrent_days = 30, delete_markers = true, abort_days = 7 }]
    error_message = "noncurrent versions must expire after 30 days by default"
  }

  assert {
    condition = [
      for r in aws_s3_bucket_lifecycle_configuration.this[0].rule : {
        tag  = r.filter[0].tag[0]
        days = r.expiration[0].days
      } if r.id == "expire-stale-journal-deltas"
    ] == [{ tag = { key = "documee-remote-kind", value = "delta" }, days = 30 }]
    error_message = "deltas (tag documee-remote-kind=delta) must expire after 30 days by default"
  }

  assert {
    condition = [
      for r in aws_s3_bucket_lifecycle_configuration.this[0].rule : {
        tag  = r.filter[0].tag[0]
        days = r.expiration[0].days
      } if r.id == "expire-stale-leases"
    ] == [{ tag = { key = "documee-remote-kind", value = "lease" }, days = 2 }]
    error_message = "leases (tag documee-remote-kind=lease) must expire after 2 days by default"
  }
}

run "lifecycle_days_are_configurable_and_tag_rules_optional" {
  command = plan

  variables {
    noncurrent_version_expiration_days = 90
    stale_delta_expiration_days        = null
    stale_lease_expiration_days        = 5
  }

  assert {
    condition = toset([for r in aws_s3_bucket_lifecycle_configuration.this[0].rule : r.id]) == toset([
      "expire-noncurrent-versions", "expire-stale-leases",
    ])
    error_message = "stale_delta_expiration_days = null must drop the delta rule only"
  }

  assert {
    condition = [
      for r in aws_s3_bucket_lifecycle_configuration.this[0].rule : r.noncurrent_version_expiration[0].noncurrent_days
      if r.id == "expire-noncurrent-versions"
    ] == [90]
    error_message = "noncurrent_version_expiration_days is not applied"
  }

  assert {
    condition = [
      for r in aws_s3_bucket_lifecycle_configuration.this[0].rule : r.expiration[0].days
      if r.id == "expire-stale-leases"
    ] == [5]
    error_message = "stale_lease_expiration_days is not applied"
  }
}

run "policies_are_scoped_to_each_team_prefix" {
  command = plan

  assert {
    condition     = length(aws_iam_policy.access) == 6 && length(aws_iam_role.team) == 6
    error_message = "expected a reader, analyser and admin policy and role per team"
  }

  # Every object-level grant of every team policy is on <bucket>/<own prefix>*.
  assert {
    condition = alltrue(flatten([
      for key, p in aws_iam_policy.access : [
        for s in jsondecode(p.policy).Statement : [
          for r in flatten([s.Resource]) :
          r == "arn:aws:s3:::documee-test-bucket" || r == "arn:aws:s3:::documee-test-bucket/${split("/", key)[0]}/*"
        ]
      ]
    ]))
    error_message = "a team policy grants something outside the bucket or outside the team's prefix"
  }

  # Every bucket-level ListBucket grant is limited by s3:prefix to the team's prefix.
  assert {
    condition = alltrue(flatten([
      for key, p in aws_iam_policy.access : [
        for s in jsondecode(p.policy).Statement :
        s.Condition.StringLike["s3:prefix"] == "${split("/", key)[0]}/*"
        if s.Action == "s3:ListBucket"
      ]
    ]))
    error_message = "ListBucket must be conditioned on s3:prefix = <team prefix>*"
  }

  assert {
    condition = alltrue([
      for key, p in aws_iam_policy.access :
      length([for s in jsondecode(p.policy).Statement : s if s.Action == "s3:ListBucket"]) == 1
    ])
    error_message = "each team policy must have exactly one ListBucket statement"
  }

  assert {
    condition = alltrue(flatten([
      for s in jsondecode(aws_iam_policy.access["team-a/reader"].policy).Statement :
      [for a in flatten([s.Action]) : contains(["s3:ListBucket", "s3:GetObject"], a)]
    ]))
    error_message = "the reader may only list and get"
  }

  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_policy.access["team-b/analyser"].policy).Statement : s.Action
      ])) == toset([
      "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:PutObjectTagging",
      "s3:AbortMultipartUpload", "s3:DeleteObject",
    ])
    error_message = "unexpected analyser actions"
  }

  assert {
    condition = alltrue(flatten([
      for s in jsondecode(aws_iam_policy.access["team-a/admin"].policy).Statement : [
        for a in flatten([s.Action]) :
        s.Resource == "arn:aws:s3:::documee-test-bucket" if startswith(a, "s3:GetBucket") || a == "s3:GetEncryptionConfiguration" || a == "s3:GetLifecycleConfiguration"
      ]
    ]))
    error_message = "admin bucket-configuration reads must be on the bucket ARN only"
  }

  assert {
    condition     = length([for s in jsondecode(aws_iam_policy.access["team-a/reader"].policy).Statement : s if s.Effect != "Allow"]) == 0
    error_message = "identity policies only allow"
  }

  assert {
    condition     = output.policy_documents["team-b"]["reader"] == aws_iam_policy.access["team-b/reader"].policy
    error_message = "output policy_documents differs from the created policies"
  }

  assert {
    condition = alltrue([
      for r in aws_iam_role.team :
      jsondecode(r.assume_role_policy).Statement[0].Principal.AWS == ["arn:aws:iam::123456789012:root"]
    ])
    error_message = "without principals the roles must trust the account root only"
  }

  assert {
    condition     = output.store_urls == { team-a = "s3://documee-test-bucket/team-a/", team-b = "s3://documee-test-bucket/team-b/" }
    error_message = "unexpected store URLs"
  }

  assert {
    condition     = length(aws_iam_policy.kms) == 0 && length(aws_iam_role_policy_attachment.kms) == 0
    error_message = "no KMS policy without kms_key_arn"
  }

  assert {
    condition     = length(aws_iam_policy.list_bucket) == 0
    error_message = "bucket-wide listing must be off by default"
  }

  assert {
    condition     = length(aws_lambda_function.compactor) == 0 && length(aws_cloudwatch_event_rule.compaction) == 0
    error_message = "no Lambda and no schedule without lambda_zip_path"
  }
}

run "principals_fall_back_from_team_to_trusted_to_account_root" {
  command = plan

  variables {
    trusted_principal_arns = ["arn:aws:iam::123456789012:role/ci"]
    teams = {
      team-a = {
        prefix            = "team-a/"
        reader_principals = ["arn:aws:iam::123456789012:role/team-a-devs"]
      }
    }
  }

  assert {
    condition     = jsondecode(aws_iam_role.team["team-a/reader"].assume_role_policy).Statement[0].Principal.AWS == ["arn:aws:iam::123456789012:role/team-a-devs"]
    error_message = "reader_principals is not used"
  }

  assert {
    condition     = jsondecode(aws_iam_role.team["team-a/admin"].assume_role_policy).Statement[0].Principal.AWS == ["arn:aws:iam::123456789012:role/ci"]
    error_message = "trusted_principal_arns is not the fallback"
  }
}

run "kms_key_switches_to_sse_kms_and_grants_that_key_only" {
  command = plan

  variables {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }

  assert {
    condition = alltrue([
      for r in aws_s3_bucket_server_side_encryption_configuration.this[0].rule :
      r.apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms"
      && r.apply_server_side_encryption_by_default[0].kms_master_key_id == "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
      && r.bucket_key_enabled == true
    ])
    error_message = "with kms_key_arn the default encryption must be aws:kms with that key and a bucket key"
  }

  assert {
    condition     = length(aws_iam_policy.kms) == 2 && length(aws_iam_role_policy_attachment.kms) == 6
    error_message = "expected a KMS read and write policy attached to every team role"
  }

  assert {
    condition = alltrue(flatten([
      for p in aws_iam_policy.kms : [
        for s in jsondecode(p.policy).Statement :
        s.Resource == "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        && s.Condition.StringEquals["kms:ViaService"] == "s3.eu-west-1.amazonaws.com"
      ]
    ]))
    error_message = "KMS grants must be on the given key only, through S3 only"
  }

  assert {
    condition     = toset(flatten([for s in jsondecode(aws_iam_policy.kms["read"].policy).Statement : s.Action])) == toset(["kms:Decrypt"])
    error_message = "readers need kms:Decrypt only"
  }

  assert {
    condition     = toset(flatten([for s in jsondecode(aws_iam_policy.kms["write"].policy).Statement : s.Action])) == toset(["kms:Decrypt", "kms:GenerateDataKey"])
    error_message = "writers need kms:Decrypt and kms:GenerateDataKey only"
  }
}

run "lambda_is_created_only_with_a_zip" {
  command = plan

  # Give the policy ARN a value at plan time, so the attachment can be checked.
  override_resource {
    target          = aws_iam_policy.access["team-b/admin"]
    override_during = plan
    values = {
      arn = "arn:aws:iam::123456789012:policy/documee-remote-team-b-admin"
    }
  }

  variables {
    lambda_zip_path = "tests/fixtures/compactor.zip"
  }

  assert {
    condition     = length(aws_lambda_function.compactor) == 2
    error_message = "expected one compaction Lambda per team"
  }

  assert {
    condition = alltrue([
      for team, f in aws_lambda_function.compactor :
      f.handler == "documee_remote.aws_lambda.handler" && f.runtime == "python3.12"
      && f.memory_size == 512 && f.timeout == 300
      && f.environment[0].variables["DOCUMEE_STORE_URL"] == "s3://documee-test-bucket/${team}/"
    ])
    error_message = "unexpected Lambda handler, runtime, sizing or store URL"
  }

  assert {
    condition     = aws_iam_role_policy_attachment.compactor_access["team-b"].policy_arn == "arn:aws:iam::123456789012:policy/documee-remote-team-b-admin"
    error_message = "the compactor must run with its team's admin policy"
  }

  assert {
    condition = alltrue([
      for r in aws_iam_role.compactor :
      jsondecode(r.assume_role_policy).Statement[0].Principal == { Service = "lambda.amazonaws.com" }
    ])
    error_message = "the compactor role must be assumable by Lambda only"
  }

  assert {
    condition     = length(aws_cloudwatch_event_rule.compaction) == 0 && length(aws_lambda_permission.compaction) == 0
    error_message = "no schedule without compaction_schedule_expression"
  }
}

run "schedule_is_created_only_when_enabled" {
  command = plan

  variables {
    lambda_zip_path                = "tests/fixtures/compactor.zip"
    compaction_schedule_expression = "rate(1 hour)"
    lambda_memory_size             = 1024
    lambda_timeout                 = 600
  }

  assert {
    condition     = length(aws_cloudwatch_event_rule.compaction) == 2 && length(aws_cloudwatch_event_target.compaction) == 2 && length(aws_lambda_permission.compaction) == 2
    error_message = "expected a schedule rule, target and invoke permission per team"
  }

  assert {
    condition     = alltrue([for r in aws_cloudwatch_event_rule.compaction : r.schedule_expression == "rate(1 hour)"])
    error_message = "the schedule expression is not applied"
  }

  assert {
    condition     = alltrue([for t in aws_cloudwatch_event_target.compaction : jsondecode(t.input) == { action = "compact" }])
    error_message = "the schedule must send the compaction event"
  }

  assert {
    condition     = alltrue([for p in aws_lambda_permission.compaction : p.principal == "events.amazonaws.com"])
    error_message = "only EventBridge may invoke the compactor"
  }

  assert {
    condition     = alltrue([for f in aws_lambda_function.compactor : f.memory_size == 1024 && f.timeout == 600])
    error_message = "lambda_memory_size / lambda_timeout are not applied"
  }
}

run "schedule_without_lambda_creates_nothing" {
  command = plan

  variables {
    compaction_schedule_expression = "rate(1 hour)"
  }

  assert {
    condition     = length(aws_lambda_function.compactor) == 0 && length(aws_cloudwatch_event_rule.compaction) == 0
    error_message = "a schedule without lambda_zip_path must create nothing"
  }
}

run "existing_bucket_gets_iam_only" {
  command = plan

  variables {
    create_bucket = false
    create_roles  = false
  }

  assert {
    condition = (length(aws_s3_bucket.this) + length(aws_s3_bucket_policy.this) + length(aws_s3_bucket_versioning.this)
    + length(aws_s3_bucket_lifecycle_configuration.this) + length(aws_s3_bucket_server_side_encryption_configuration.this)) == 0
    error_message = "create_bucket = false must not manage the bucket"
  }

  assert {
    condition     = length(aws_iam_policy.access) == 6 && length(aws_iam_role.team) == 0 && length(output.role_arns) == 0
    error_message = "create_roles = false must still create the policies, and no roles"
  }

  assert {
    condition     = output.bucket_name == "documee-test-bucket" && output.bucket_arn == "arn:aws:s3:::documee-test-bucket"
    error_message = "the existing bucket is not the one named"
  }
}

run "bucket_wide_list_is_opt_in" {
  command = plan

  variables {
    grant_bucket_wide_list = true
  }

  assert {
    condition     = length(aws_iam_role_policy_attachment.list_bucket) == 6
    error_message = "grant_bucket_wide_list must attach the list policy to every team role"
  }

  assert {
    condition     = jsondecode(aws_iam_policy.list_bucket[0].policy).Statement[0].Action == "s3:ListBucket" && jsondecode(aws_iam_policy.list_bucket[0].policy).Statement[0].Resource == "arn:aws:s3:::documee-test-bucket"
    error_message = "the list policy must grant ListBucket on the bucket only"
  }
}

run "rejects_wildcard_prefix" {
  command = plan

  variables {
    teams = { team-a = { prefix = "team-*/" } }
  }

  expect_failures = [var.teams]
}

run "rejects_prefix_without_trailing_slash" {
  command = plan

  variables {
    teams = { team-a = { prefix = "team-a" } }
  }

  expect_failures = [var.teams]
}

run "rejects_nested_prefixes" {
  command = plan

  variables {
    teams = {
      outer = { prefix = "shared/" }
      inner = { prefix = "shared/inner/" }
    }
  }

  expect_failures = [var.teams]
}

run "rejects_duplicate_prefixes" {
  command = plan

  variables {
    teams = {
      team-a = { prefix = "same/" }
      team-b = { prefix = "same/" }
    }
  }

  expect_failures = [var.teams]
}

run "rejects_kms_alias" {
  command = plan

  variables {
    kms_key_arn = "alias/documee"
  }

  expect_failures = [var.kms_key_arn]
}

run "accepts_cron_schedule" {
  command = plan

  variables {
    lambda_zip_path                = "tests/fixtures/compactor.zip"
    compaction_schedule_expression = "cron(0 3 * * ? *)"
  }

  assert {
    condition     = alltrue([for r in aws_cloudwatch_event_rule.compaction : r.schedule_expression == "cron(0 3 * * ? *)"])
    error_message = "a cron() schedule must be accepted"
  }
}

run "rejects_malformed_schedule" {
  command = plan

  variables {
    lambda_zip_path                = "tests/fixtures/compactor.zip"
    compaction_schedule_expression = "rate(1h)"
  }

  expect_failures = [var.compaction_schedule_expression]
}
