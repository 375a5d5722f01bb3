locals {
  lambda_teams   = var.lambda_zip_path == null ? {} : var.teams
  schedule_teams = var.compaction_schedule_expression == null ? {} : local.lambda_teams

  lambda_handler = "documee_remote.aws_lambda.handler"
  lambda_runtime = "python3.12"

  store_urls = { for team, t in var.teams : team => "s3://${var.bucket_name}/${t.prefix}" }
}

resource "aws_cloudwatch_log_group" "compactor" {
  for_each = local.lambda_teams

  name              = "/aws/lambda/${var.name_prefix}-${each.key}-compactor"
  retention_in_days = var.lambda_log_retention_days
  tags              = var.tags
}

resource "aws_iam_role" "compactor" {
  for_each = local.lambda_teams

  name                 = "${var.name_prefix}-${each.key}-compactor"
  path                 = var.iam_path
  description          = "documee-remote compaction Lambda of s3://${var.bucket_name}/${each.value.prefix}"
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AssumeByLambda"
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "lambda.amazonaws.com" }
    }]
  })
}

# The compactor does what the team's admin does (compact, gc), nothing more.
resource "aws_iam_role_policy_attachment" "compactor_access" {
  for_each = local.lambda_teams

  role       = aws_iam_role.compactor[each.key].name
  policy_arn = aws_iam_policy.access["${each.key}/admin"].arn
}

resource "aws_iam_role_policy_attachment" "compactor_kms" {
  for_each = local.use_kms ? local.lambda_teams : {}

  role       = aws_iam_role.compactor[each.key].name
  policy_arn = aws_iam_policy.kms["write"].arn
}

resource "aws_iam_role_policy" "compactor_logs" {
  for_each = local.lambda_teams

  name = "write-own-log-group"
  role = aws_iam_role.compactor[each.key].id
  policy = jsonencode(jsondecode(templatefile("${local.policy_dir}/lambda_logs.json.tftpl", {
    log_group_arn = aws_cloudwatch_log_group.compactor[each.key].arn
  })))
}

resource "aws_lambda_function" "compactor" {
  for_each = local.lambda_teams

  function_name    = "${var.name_prefix}-${each.key}-compactor"
  description      = "documee-remote compaction and gc of ${local.store_urls[each.key]}"
  role             = aws_iam_role.compactor[each.key].arn
  handler          = local.lambda_handler
  runtime          = local.lambda_runtime
  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  memory_size      = var.lambda_memory_size
  timeout          = var.lambda_timeout
  tags             = var.tags

  environment {
    variables = merge(var.lambda_environment, {
      DOCUMEE_STORE_URL = local.store_urls[each.key]
    })
  }

  depends_on = [
    aws_cloudwatch_log_group.compactor,
    aws_iam_role_policy.compactor_logs,
    aws_iam_role_policy_attachment.compactor_access,
    aws_iam_role_policy_attachment.compactor_kms,
  ]
}

resource "aws_cloudwatch_event_rule" "compaction" {
  for_each = local.schedule_teams

  name                = "${var.name_prefix}-${each.key}-compaction"
  description         = "Compact ${local.store_urls[each.key]}"
  schedule_expression = var.compaction_schedule_expression
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "compaction" {
  for_each = local.schedule_teams

  rule  = aws_cloudwatch_event_rule.compaction[each.key].name
  arn   = aws_lambda_function.compactor[each.key].arn
  input = jsonencode(var.compaction_event)
}

resource "aws_lambda_permission" "compaction" {
  for_each = local.schedule_teams

  statement_id  = "AllowCompactionSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.compactor[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.compaction[each.key].arn
}
