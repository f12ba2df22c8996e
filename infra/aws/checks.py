"""The rules a deployable template must keep, as one function the tests run on the packaged
template (and on broken copies of it, to show each rule bites).

Each problem is one line naming the resource and the rule. The rules:

* every SQS queue the template declares is a DLQ or has a redrive policy to one with
  ``maxReceiveCount`` 5, and a visibility timeout of at least 6x the timeout of the function that
  consumes it; every DLQ has an alarm on its depth;
* every SQS event source reports partial batch failures (``ReportBatchItemFailures``), every
  consumer function has an error alarm and is created after the policy that lets it read its queue;
* no IAM statement grants a wildcard resource except CloudWatch Logs; no managed policy beyond the
  VPC access one, and that only under the ``UseVpc`` condition;
* every DynamoDB table is on-demand, encrypted, with point-in-time recovery, and has a TTL
  attribute where its model declares one;
* no function's environment carries a secret (they come from SSM Parameter Store);
* the API is regional, throttled, and has a 5xx alarm;
* every bucket blocks public access and deletes uploads still tagged pending (files never filed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.domain.uploads import PENDING, UPLOAD_TAG

LOGS_ARN = "arn:*:logs:*:*:*"
# The only wildcards allowed: the indexes of one named table, the parameters under one named path,
# the objects of one named bucket (under a prefix or not).
_NARROW_WILDCARDS = (
    re.compile(r"^arn:\$\{AWS::Partition\}:dynamodb:\$\{AWS::Region\}:\$\{AWS::AccountId\}:table/[A-Za-z0-9_.-]+/index/\*$"),
    re.compile(r"^arn:\$\{AWS::Partition\}:ssm:\$\{AWS::Region\}:\$\{AWS::AccountId\}:parameter(/[A-Za-z0-9_.-]+)+/\*$"),
    re.compile(r"^arn:\$\{AWS::Partition\}:s3:::[a-z0-9.-]+(/[A-Za-z0-9_.-]+)*/\*$"),
)
VPC_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"


def problems(template: Mapping[str, Any], secret_names: Iterable[str] = (),
             ttl_tables: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with ``template`` (empty: nothing). ``secret_names``: environment variables
    that must not appear; ``ttl_tables``: table name -> the TTL attribute it must have."""
    resources: Mapping[str, Any] = template.get("Resources", {})
    found: list[str] = []
    found += _queue_problems(resources)
    found += _consumer_problems(resources)
    found += _iam_problems(resources)
    found += _table_problems(resources, ttl_tables or {})
    found += _secret_problems(resources, set(secret_names))
    found += _api_problems(resources)
    found += _bucket_problems(resources)
    return found


def _of_type(resources: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r.get("Type") == kind}


def _props(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    return resource.get("Properties", {})


def _queue_name_of_arn(arn: Any) -> str | None:
    text = arn.get("Fn::Sub") if isinstance(arn, Mapping) else arn
    return str(text).rsplit(":", 1)[-1] if text else None


def _sqs_events(function: Mapping[str, Any]) -> dict[str, Any]:
    return {n: e for n, e in _props(function).get("Events", {}).items() if e.get("Type") == "SQS"}


def _alarm_dimensions(resources: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    out = []
    for alarm in _of_type(resources, "AWS::CloudWatch::Alarm").values():
        props = _props(alarm)
        for dim in props.get("Dimensions", []):
            out.append((props.get("MetricName", ""), dim.get("Name", ""), json.dumps(dim.get("Value"), sort_keys=True)))
    return out


def _queue_problems(resources: Mapping[str, Any]) -> list[str]:
    found = []
    queues = _of_type(resources, "AWS::SQS::Queue")
    dlqs = {name for q in queues.values() if (rp := _props(q).get("RedrivePolicy"))
            for name in [rp.get("deadLetterTargetArn", {}).get("Fn::GetAtt", [None])[0]] if name}
    timeouts = {}
    for fname, function in _of_type(resources, "AWS::Serverless::Function").items():
        for event in _sqs_events(function).values():
            timeouts[_queue_name_of_arn(event["Properties"].get("Queue"))] = (fname, _props(function).get("Timeout", 3))
    dims = _alarm_dimensions(resources)
    for name, queue in queues.items():
        props = _props(queue)
        if name in dlqs:
            wanted = ("ApproximateNumberOfMessagesVisible", "QueueName", json.dumps({"Fn::GetAtt": [name, "QueueName"]}))
            if wanted not in dims:
                found.append(f"{name}: a dead-letter queue without an alarm on its depth")
            continue
        redrive = props.get("RedrivePolicy")
        if not redrive:
            found.append(f"{name}: a queue without a dead-letter queue")
        elif redrive.get("maxReceiveCount") != 5:
            found.append(f"{name}: maxReceiveCount must be 5")
        consumer = timeouts.get(props.get("QueueName"))
        if consumer and int(props.get("VisibilityTimeout", 30)) < 6 * int(consumer[1]):
            found.append(f"{name}: visibility timeout under 6 x {consumer[0]}'s timeout ({consumer[1]} s)")
    for queue_name, (fname, _) in timeouts.items():
        if not any(_props(q).get("QueueName") == queue_name for q in queues.values()):
            found.append(f"{fname}: consumes {queue_name}, which the template does not declare")
    return found


def _consumer_problems(resources: Mapping[str, Any]) -> list[str]:
    found = []
    dims = _alarm_dimensions(resources)
    for name, function in _of_type(resources, "AWS::Serverless::Function").items():
        events = _sqs_events(function)
        for event_name, event in events.items():
            if "ReportBatchItemFailures" not in event["Properties"].get("FunctionResponseTypes", []):
                found.append(f"{name}.{event_name}: the event source does not report batch item failures")
        if events and ("Errors", "FunctionName", json.dumps({"Ref": name})) not in dims:
            found.append(f"{name}: a consumer without an error alarm")
        policies = set(_of_type(resources, "AWS::IAM::Policy"))
        if events and policies and not policies & set(function.get("DependsOn", [])):
            found.append(f"{name}: its event source may be created before the policy that lets it read the queue")
    return found


def _statements(resources: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for name, policy in _of_type(resources, "AWS::IAM::Policy").items():
        out += [(name, s) for s in _props(policy)["PolicyDocument"]["Statement"]]
    for name, role in _of_type(resources, "AWS::IAM::Role").items():
        for inline in _props(role).get("Policies", []):
            out += [(name, s) for s in inline["PolicyDocument"]["Statement"]]
    return out


def _iam_problems(resources: Mapping[str, Any]) -> list[str]:
    found = []
    for name, statement in _statements(resources):
        targets = statement.get("Resource", [])
        for target in targets if isinstance(targets, list) else [targets]:
            text = target.get("Fn::Sub", "") if isinstance(target, Mapping) else str(target)
            if text == LOGS_ARN or "*" not in text or any(p.search(text) for p in _NARROW_WILDCARDS):
                continue
            found.append(f"{name}: {statement.get('Sid') or statement.get('Action')} grants a wildcard resource "
                         f"{text!r}")
        actions = statement.get("Action", [])
        for action in actions if isinstance(actions, list) else [actions]:
            if "*" in action:
                found.append(f"{name}: grants every action matching {action!r}")
    for name, role in _of_type(resources, "AWS::IAM::Role").items():
        managed = _props(role).get("ManagedPolicyArns")
        if managed and managed != {"Fn::If": ["UseVpc", [{"Fn::Sub": VPC_POLICY}], {"Ref": "AWS::NoValue"}]}:
            found.append(f"{name}: managed policies beyond VPC access under UseVpc")
    return found


def _table_problems(resources: Mapping[str, Any], ttl_tables: Mapping[str, str]) -> list[str]:
    found = []
    tables = _of_type(resources, "AWS::DynamoDB::Table")
    names = set()
    for name, table in tables.items():
        props = _props(table)
        names.add(props.get("TableName"))
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            found.append(f"{name}: not on-demand (PAY_PER_REQUEST)")
        if not props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
            found.append(f"{name}: point-in-time recovery is off")
        if not props.get("SSESpecification", {}).get("SSEEnabled"):
            found.append(f"{name}: server-side encryption is off")
        wanted = ttl_tables.get(props.get("TableName"))
        ttl = props.get("TimeToLiveSpecification", {})
        if wanted and (ttl.get("AttributeName") != wanted or not ttl.get("Enabled")):
            found.append(f"{name}: records expire by {wanted!r} but TTL is not on it")
    for table_name in ttl_tables:
        if table_name not in names:
            found.append(f"{table_name}: a table of the code that the template does not declare")
    return found


def _secret_problems(resources: Mapping[str, Any], secret_names: set[str]) -> list[str]:
    found = []
    for name, function in _of_type(resources, "AWS::Serverless::Function").items():
        variables = _props(function).get("Environment", {}).get("Variables", {})
        for variable in sorted(secret_names & set(variables)):
            found.append(f"{name}: the secret {variable} is a plain environment variable")
    return found


def _api_problems(resources: Mapping[str, Any]) -> list[str]:
    found = []
    for name, api in _of_type(resources, "AWS::Serverless::Api").items():
        props = _props(api)
        if props.get("EndpointConfiguration") not in ("REGIONAL", {"Type": "REGIONAL"}):
            found.append(f"{name}: not a regional endpoint (edge endpoints do not exist in the China regions)")
        settings = props.get("MethodSettings", [])
        if not any("ThrottlingRateLimit" in s and "ThrottlingBurstLimit" in s for s in settings):
            found.append(f"{name}: no throttling")
        if not any(metric == "5XXError" and dim == "ApiName" for metric, dim, _ in _alarm_dimensions(resources)):
            found.append(f"{name}: no 5xx alarm")
    return found


def _bucket_problems(resources: Mapping[str, Any]) -> list[str]:
    found = []
    for name, bucket in _of_type(resources, "AWS::S3::Bucket").items():
        props = _props(bucket)
        block = props.get("PublicAccessBlockConfiguration", {})
        if not all(block.get(k) is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                                                  "RestrictPublicBuckets")):
            found.append(f"{name}: public access is not blocked")
        rules = props.get("LifecycleConfiguration", {}).get("Rules", [])
        if not any(r.get("Status") == "Enabled" and r.get("ExpirationInDays")
                   and {"Key": UPLOAD_TAG, "Value": PENDING} in r.get("TagFilters", []) for r in rules):
            found.append(f"{name}: uploads never filed are never deleted (no expiry of {UPLOAD_TAG}={PENDING})")
    return found
