locals {
  role_kinds = ["reader", "analyser", "admin"]

  # "<team>/<kind>" => what the team's role of that kind needs.
  team_roles = {
    for pair in setproduct(keys(var.teams), local.role_kinds) :
    "${pair[0]}/${pair[1]}" => {
      team   = pair[0]
      kind   = pair[1]
      prefix = var.teams[pair[0]].prefix
      principals = coalescelist(
        {
          reader   = var.teams[pair[0]].reader_principals
          analyser = var.teams[pair[0]].analyser_principals
          admin    = var.teams[pair[0]].admin_principals
        }[pair[1]],
        var.trusted_principal_arns,
        [local.account_root],
      )
    }
  }

  # infra/policies/<kind>.json.tftpl rendered with the bucket ARN and the
  # team's prefix, normalised (and checked to be JSON) by jsondecode.
  policy_documents = {
    for key, role in local.team_roles :
    key => jsonencode(jsondecode(templatefile("${local.policy_dir}/${role.kind}.json.tftpl", {
      bucket_arn = local.bucket_arn
      prefix     = role.prefix
    })))
  }

  kms_policy_documents = local.use_kms ? {
    for mode in ["read", "write"] :
    mode => jsonencode(jsondecode(templatefile("${local.policy_dir}/kms_${mode}.json.tftpl", {
      kms_key_arn = var.kms_key_arn
      region      = data.aws_region.current.name
      dns_suffix  = data.aws_partition.current.dns_suffix
    })))
  } : {}

  list_bucket_policy_document = jsonencode(jsondecode(templatefile("${local.policy_dir}/list_bucket.json.tftpl", {
    bucket_arn = local.bucket_arn
  })))

  roles = var.create_roles ? local.team_roles : {}
}

resource "aws_iam_policy" "access" {
  for_each = local.team_roles

  name        = "${var.name_prefix}-${each.value.team}-${each.value.kind}"
  path        = var.iam_path
  description = "documee-remote ${each.value.kind} access to s3://${var.bucket_name}/${each.value.prefix}"
  policy      = local.policy_documents[each.key]
  tags        = var.tags
}

resource "aws_iam_policy" "kms" {
  for_each = local.kms_policy_documents

  name        = "${var.name_prefix}-kms-${each.key}"
  path        = var.iam_path
  description = "documee-remote: ${each.key} objects of s3://${var.bucket_name} encrypted with its KMS key"
  policy      = each.value
  tags        = var.tags
}

resource "aws_iam_policy" "list_bucket" {
  count = var.grant_bucket_wide_list ? 1 : 0

  name        = "${var.name_prefix}-list-bucket"
  path        = var.iam_path
  description = "documee-remote: list every key name of s3://${var.bucket_name} (so missing keys are 404, not 403)"
  policy      = local.list_bucket_policy_document
  tags        = var.tags
}

resource "aws_iam_role" "team" {
  for_each = local.roles

  name                 = "${var.name_prefix}-${each.value.team}-${each.value.kind}"
  path                 = var.iam_path
  description          = "documee-remote ${each.value.kind} of s3://${var.bucket_name}/${each.value.prefix}"
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AssumeByTrustedPrincipals"
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { AWS = each.value.principals }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "access" {
  for_each = local.roles

  role       = aws_iam_role.team[each.key].name
  policy_arn = aws_iam_policy.access[each.key].arn
}

resource "aws_iam_role_policy_attachment" "kms" {
  for_each = local.use_kms ? local.roles : {}

  role       = aws_iam_role.team[each.key].name
  policy_arn = aws_iam_policy.kms[each.value.kind == "reader" ? "read" : "write"].arn
}

resource "aws_iam_role_policy_attachment" "list_bucket" {
  for_each = var.grant_bucket_wide_list ? local.roles : {}

  role       = aws_iam_role.team[each.key].name
  policy_arn = aws_iam_policy.list_bucket[0].arn
}
