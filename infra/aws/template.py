"""The CloudFormation that ``chalice package`` does not write, built from the code's own declarations.

``chalice package --stage prod --merge-template infra/aws/resources.json`` merges this into the SAM
template Chalice generates (dicts merge deeply, lists replace). It declares:

* every DynamoDB table of :data:`chalicelib.resources.TABLE_MODELS`, with the keys and indexes the
  PynamoDB models declare, on-demand billing, point-in-time recovery, encryption at rest and the
  TTL attribute where records expire (the local stack creates the same tables from the same models);
* every SQS queue of :data:`chalicelib.resources.QUEUES` with its dead-letter queue (redrive after
  ``max_receive_count`` receipts) and a visibility timeout of at least six times the consumer's
  Lambda timeout; each consumer's event source reports partial batch failures
  (``FunctionResponseTypes: [ReportBatchItemFailures]``, which Chalice does not set) and waits for
  its queue (``DependsOn``: Chalice names queues by ARN string, so CloudFormation would not);
* the uploads bucket (private, encrypted, CORS for the H5's presigned PUTs);
* one ``AWS::IAM::Policy`` on Chalice's role with just the actions the code uses on just these
  tables, indexes, queues, the bucket and the secrets' parameter path (Chalice's own inline policy
  list is replaced by one granting CloudWatch Logs only);
* CloudWatch alarms, to one SNS topic: any message in a DLQ, any consumer error, the API's 5xx rate;
* API Gateway throttling, the platform's 404 body for unknown routes, a regional endpoint (edge
  endpoints do not exist in the China regions);
* optionally (parameters ``SubnetIds``/``SecurityGroupIds``), every function in a VPC, so that its
  calls to WeCom leave through a NAT gateway's Elastic IP (WeCom's trusted-IP list).

Run ``python -m infra.aws.template`` to regenerate ``infra/aws/resources.json`` after changing a
model, a queue or a consumer; ``tests/deploy`` fails while the committed file is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pynamodb.attributes import TTLAttribute
from pynamodb.models import Model

from chalicelib.domain.uploads import PENDING, UPLOAD_TAG

PROJECT_DIR = Path(__file__).resolve().parents[2]
MERGE_FILE = PROJECT_DIR / "infra" / "aws" / "resources.json"
STAGE = "prod"
DEFAULT_TIMEOUT = 60  # Chalice's default Lambda timeout
SECRETS_PATH_PARAMETER = "SECRETS_PARAMETER_PATH"

# What the code does with each service (the IAM actions of the calls it makes; tests/deploy
# records the calls the integration suite makes and checks they are all here).
DYNAMODB_ACTIONS = sorted({"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                           "dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem",
                           "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable"})
SQS_SEND_ACTIONS = ["sqs:GetQueueUrl", "sqs:SendMessage"]
SQS_CONSUME_ACTIONS = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                       "sqs:ReceiveMessage"]
# PutObjectTagging: the presigned PUT carries the pending tag, and filing a form tags its files kept.
S3_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"]
# A pending upload can be put on a form only while its slot lives (the URL's minutes plus a day):
# after this many days nothing can ever hold it, and the bucket deletes it.
PENDING_UPLOAD_DAYS = 2


def cfn_name(text: str) -> str:
    """``absence_days`` -> ``AbsenceDays`` (CloudFormation logical ids are alphanumeric)."""
    return "".join(part[:1].upper() + part[1:] for part in text.replace("-", "_").split("_"))


def stage_config(config: Mapping[str, Any], stage: str = STAGE) -> dict[str, Any]:
    """The stage's environment and per-function settings from ``.chalice/config.json``."""
    stage_cfg = config["stages"][stage]
    env = {**config.get("environment_variables", {}), **stage_cfg.get("environment_variables", {})}
    return {"env": env, "functions": stage_cfg.get("lambda_functions", {}),
            "timeout": stage_cfg.get("lambda_timeout", config.get("lambda_timeout", DEFAULT_TIMEOUT))}


def function_timeout(stage: Mapping[str, Any], function: str) -> int:
    return int(stage["functions"].get(function, {}).get("lambda_timeout", stage["timeout"]))


# -- tables -----------------------------------------------------------------------------------------
def table_spec(model: type[Model]) -> dict[str, Any]:
    """Keys, attribute definitions, indexes and TTL attribute of a PynamoDB model, in
    CloudFormation's shape: one description the template and the local stack both use."""
    schema = model._get_schema()
    definitions: dict[str, str] = {d["AttributeName"]: d["AttributeType"] for d in schema["attribute_definitions"]}
    indexes = []
    for index in schema.get("global_secondary_indexes", []):
        for d in index.get("attribute_definitions", []):
            definitions[d["AttributeName"]] = d["AttributeType"]
        indexes.append({"IndexName": index["index_name"], "KeySchema": _key_schema(index["key_schema"]),
                        "Projection": _projection(index["projection"])})
    ttl = [a.attr_name for a in model.get_attributes().values() if isinstance(a, TTLAttribute)]
    spec: dict[str, Any] = {
        "KeySchema": _key_schema(schema["key_schema"]),
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in sorted(definitions.items())],
    }
    if indexes:
        spec["GlobalSecondaryIndexes"] = sorted(indexes, key=lambda i: i["IndexName"])
    if schema.get("local_secondary_indexes"):
        raise ValueError(f"{model.__name__}: local secondary indexes are not supported by this template")
    if ttl:
        spec["TimeToLiveSpecification"] = {"AttributeName": ttl[0], "Enabled": True}
    return spec


def _key_schema(keys: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    return sorted(({"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in keys),
                  key=lambda k: k["KeyType"] != "HASH")  # HASH first, as CloudFormation requires


def _projection(projection: Mapping[str, Any]) -> dict[str, Any]:
    out = {"ProjectionType": projection["ProjectionType"]}
    if projection.get("NonKeyAttributes"):
        out["NonKeyAttributes"] = sorted(projection["NonKeyAttributes"])
    return out


def table_resources(models: Iterable[type[Model]], prefix: str) -> dict[str, Any]:
    from chalicelib.db.base import logical_name

    resources = {}
    for model in models:
        name = logical_name(model)
        resources[f"Table{cfn_name(name)}"] = {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "TableName": f"{prefix}{name}",
                "BillingMode": "PAY_PER_REQUEST",
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True},
                **table_spec(model),
            },
        }
    return resources


# -- queues and consumers -----------------------------------------------------------------------------
def queue_resources(specs: Iterable[Any]) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for spec in specs:
        queue, dlq = f"Queue{cfn_name(spec.key)}", f"Queue{cfn_name(spec.key)}Dlq"
        resources[dlq] = {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": spec.dlq_name, "MessageRetentionPeriod": 14 * 24 * 3600, "SqsManagedSseEnabled": True}}
        resources[queue] = {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": spec.name, "VisibilityTimeout": spec.visibility_timeout,
            "MessageRetentionPeriod": 4 * 24 * 3600, "SqsManagedSseEnabled": True,
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                              "maxReceiveCount": spec.max_receive_count}}}
    return resources


def consumers(app: Any) -> list[tuple[str, str]]:
    """``(function name, queue name)`` of every SQS consumer of the Chalice app."""
    from chalice.app import SQSEventConfig

    return [(e.name, e.queue) for e in app.event_sources if isinstance(e, SQSEventConfig)]


def consumer_merges(app: Any, specs: Iterable[Any], stage: Mapping[str, Any]) -> dict[str, Any]:
    """Per consumer: partial batch failures on its event source, and a dependency on its queue.

    Raises:
        ValueError: a consumer of a queue the code does not declare, or a queue whose visibility
            timeout is under six times its consumer's timeout.
    """
    by_name = {spec.name: spec for spec in specs}
    merges: dict[str, Any] = {}
    for function, queue in consumers(app):
        spec = by_name.get(queue)
        if spec is None:
            raise ValueError(f"{function} consumes {queue}, which chalicelib/resources.py does not declare")
        timeout = function_timeout(stage, function)
        if spec.visibility_timeout < 6 * timeout:
            raise ValueError(f"{queue}: visibility timeout {spec.visibility_timeout}s is under 6 x {function}'s "
                             f"{timeout}s timeout")
        resource = cfn_name(function)
        merges[resource] = {
            # Lambda checks the role may read the queue when it creates the event source mapping:
            # the queue and the policy granting that must both exist first.
            "DependsOn": [f"Queue{cfn_name(spec.key)}", "ResourcePolicy"],
            "Properties": {"Events": {f"{resource}SqsEventSource": {"Properties": {
                "FunctionResponseTypes": ["ReportBatchItemFailures"]}}}},
        }
    return merges


# -- IAM ------------------------------------------------------------------------------------------------
def _arn(service: str, resource: str, region: bool = True, account: bool = True) -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:{service}:{'${AWS::Region}' if region else ''}:"
                       f"{'${AWS::AccountId}' if account else ''}:{resource}"}


def policy(tables: Iterable[str], specs: Iterable[Any], bucket: str, secrets_path: str) -> dict[str, Any]:
    specs = list(specs)
    table_arns: list[Any] = []
    for table in sorted(tables):
        table_arns += [_arn("dynamodb", f"table/{table}"), _arn("dynamodb", f"table/{table}/index/*")]
    queue_arns = [_arn("sqs", spec.name) for spec in specs]
    path = secrets_path.rstrip("/")
    return {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "campus-platform-resources",
            "Roles": [{"Ref": "DefaultRole"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Sid": "Tables", "Effect": "Allow", "Action": DYNAMODB_ACTIONS, "Resource": table_arns},
                {"Sid": "Queues", "Effect": "Allow", "Action": sorted(SQS_SEND_ACTIONS + SQS_CONSUME_ACTIONS),
                 "Resource": queue_arns},
                {"Sid": "Uploads", "Effect": "Allow", "Action": S3_ACTIONS,
                 "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/uploads/*"}]},
                # Without it S3 answers 403 instead of 404 for an upload that never arrived.
                {"Sid": "UploadsMissing", "Effect": "Allow", "Action": ["s3:ListBucket"],
                 "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"}],
                 "Condition": {"StringLike": {"s3:prefix": ["uploads/*"]}}},
                {"Sid": "Secrets", "Effect": "Allow", "Action": ["ssm:GetParametersByPath"],
                 "Resource": [_arn("ssm", f"parameter{path}"), _arn("ssm", f"parameter{path}/*")]},
            ]},
        },
    }


# -- alarms -------------------------------------------------------------------------------------------
def alarms(specs: Iterable[Any], consumer_functions: Iterable[str], api_name: str) -> dict[str, Any]:
    resources: dict[str, Any] = {
        # Not encrypted with the aws/sns key: CloudWatch cannot publish to a topic under it (its
        # key policy cannot grant CloudWatch), and alarms carry no personal data.
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "campus-platform-alarms"}},
        "AlarmEmailSubscription": {"Type": "AWS::SNS::Subscription", "Condition": "HasAlarmEmail", "Properties": {
            "TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}},
    }
    notify = {"AlarmActions": [{"Ref": "AlarmTopic"}], "OKActions": [{"Ref": "AlarmTopic"}]}
    for spec in specs:
        dlq = f"Queue{cfn_name(spec.key)}Dlq"
        resources[f"Alarm{dlq}"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmDescription": f"Messages in {spec.dlq_name}: {spec.name} gave up on them after "
                                f"{spec.max_receive_count} tries",
            "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}],
            "Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching", **notify}}
    for function in consumer_functions:
        resource = cfn_name(function)
        resources[f"Alarm{resource}Errors"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmDescription": f"{function} failed (a whole batch, or the function itself)",
            "Namespace": "AWS/Lambda", "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": resource}}],
            "Statistic": "Sum", "Period": 300, "EvaluationPeriods": 1, "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching", **notify}}
    resources["AlarmApi5xx"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": "More than 1% of API requests answered 5xx over 5 minutes",
        "Namespace": "AWS/ApiGateway", "MetricName": "5XXError",
        "Dimensions": [{"Name": "ApiName", "Value": api_name}, {"Name": "Stage", "Value": "api"}],
        "Statistic": "Average", "Period": 300, "EvaluationPeriods": 1, "Threshold": 0.01,
        "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching", **notify}}
    return resources


# -- the whole merge template --------------------------------------------------------------------------
NOT_FOUND_BODY = '{"code": "not_found", "message": "No such route."}'


def build(app: Any, config: Mapping[str, Any], models: Iterable[type[Model]], specs: Iterable[Any]) -> dict[str, Any]:
    """The merge template for ``app`` as ``config``'s prod stage deploys it."""
    stage = stage_config(config)
    env = stage["env"]
    prefix, bucket = env["TABLE_PREFIX"], env["UPLOADS_BUCKET"]
    secrets_path = env[SECRETS_PATH_PARAMETER]
    models, specs = list(models), list(specs)
    api_name = f"{config['app_name']}-{STAGE}"
    resources: dict[str, Any] = {}
    resources.update(table_resources(models, prefix))
    resources.update(queue_resources(specs))
    resources["UploadsBucket"] = {
        "Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": bucket,
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                               "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
            "CorsConfiguration": {"CorsRules": [{"AllowedMethods": ["PUT", "GET"], "AllowedOrigins": [
                {"Ref": "H5Origin"}], "AllowedHeaders": ["*"], "MaxAge": 3600}]},
            "LifecycleConfiguration": {"Rules": [
                {"Id": "abandoned-multipart", "Status": "Enabled",
                 "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
                # Files uploaded and never filed (chalicelib.domain.uploads): personal documents
                # must not outlive the form they were meant for.
                {"Id": "abandoned-uploads", "Status": "Enabled", "Prefix": "uploads/",
                 "TagFilters": [{"Key": UPLOAD_TAG, "Value": PENDING}], "ExpirationInDays": PENDING_UPLOAD_DAYS},
            ]},
        }}
    resources["ResourcePolicy"] = policy((f"{prefix}{_logical(m)}" for m in models), specs, bucket, secrets_path)
    resources.update(alarms(specs, [name for name, _ in consumers(app)], api_name))
    for name, merge in consumer_merges(app, specs, stage).items():
        resources[name] = merge
    resources["DefaultRole"] = {"Properties": {
        # Lists replace when merged: this is Chalice's whole inline policy now (it would grant SQS
        # on "*"); the tables, queues and the rest are in ResourcePolicy, on their own ARNs.
        "Policies": [{"PolicyName": "DefaultRolePolicy", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream",
                                                          "logs:PutLogEvents"],
             "Resource": "arn:*:logs:*:*:*"}]}}],
        "ManagedPolicyArns": {"Fn::If": [
            "UseVpc", [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"}],
            {"Ref": "AWS::NoValue"}]}}}
    resources["RestAPI"] = {"Properties": {
        "Name": api_name,
        "MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*", "ThrottlingBurstLimit": {"Ref": "ApiBurstLimit"},
                            "ThrottlingRateLimit": {"Ref": "ApiRateLimit"}, "MetricsEnabled": True}],
        "GatewayResponses": {"MISSING_AUTHENTICATION_TOKEN": {
            "StatusCode": "404", "ResponseTemplates": {"application/json": NOT_FOUND_BODY}}},
    }}
    return {
        "Parameters": {
            "AlarmEmail": {"Type": "String", "Default": "",
                           "Description": "Who receives the alarms (an email address; empty: subscribe later)"},
            "H5Origin": {"Type": "String", "Default": "https://wecom-h5.example.edu.cn",
                         "Description": "The H5 front end's origin, allowed to PUT uploads to the bucket"},
            "ApiBurstLimit": {"Type": "Number", "Default": 500, "Description": "API Gateway burst limit"},
            "ApiRateLimit": {"Type": "Number", "Default": 200, "Description": "API Gateway steady requests per second"},
            "SubnetIds": {"Type": "CommaDelimitedList", "Default": "",
                          "Description": "Private subnets behind a NAT gateway with an Elastic IP (WeCom's trusted "
                                         "IP); empty: functions run outside a VPC"},
            "SecurityGroupIds": {"Type": "CommaDelimitedList", "Default": "",
                                 "Description": "Security groups of the functions when SubnetIds is set"},
        },
        "Conditions": {
            "HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]},
            "UseVpc": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SubnetIds"}]}, ""]}]},
        },
        "Globals": {"Function": {"VpcConfig": {"Fn::If": [
            "UseVpc", {"SubnetIds": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"}},
            {"Ref": "AWS::NoValue"}]}}},
        "Resources": resources,
        "Outputs": {"AlarmTopicArn": {"Value": {"Ref": "AlarmTopic"}},
                    "UploadsBucketName": {"Value": {"Ref": "UploadsBucket"}}},
    }


def _logical(model: type[Model]) -> str:
    from chalicelib.db.base import logical_name

    return logical_name(model)


def current() -> dict[str, Any]:
    """The merge template of the code as it is."""
    sys.path.insert(0, str(PROJECT_DIR))
    from app import app
    from chalicelib.resources import QUEUES, TABLE_MODELS

    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    return build(app, config, TABLE_MODELS, QUEUES)


def render(template: Mapping[str, Any]) -> str:
    return json.dumps(template, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


if __name__ == "__main__":
    MERGE_FILE.write_text(render(current()), encoding="utf-8")
    print(f"wrote {MERGE_FILE.relative_to(PROJECT_DIR)}")
