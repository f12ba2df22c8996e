"""The deployable template: `make package` from this checkout, cfn-lint on it, and the rules of
infra/aws/checks.py on it and on broken copies of it (each rule must bite)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.db.base import logical_name
from chalicelib.resources import QUEUES, TABLE_MODELS
from chalicelib.settings import SECRET_FIELDS
from infra.aws.checks import problems
from infra.aws.template import MERGE_FILE, cfn_name, current, render, table_spec
from tests.conftest import PROJECT_DIR

PREFIX = "campus-prod-"
SECRETS = [name.upper() for name in SECRET_FIELDS]
TTL = {f"{PREFIX}{logical_name(m)}": spec["TimeToLiveSpecification"]["AttributeName"]
       for m in TABLE_MODELS if "TimeToLiveSpecification" in (spec := table_spec(m))}


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("build")
    run = subprocess.run([sys.executable, "-m", "infra.aws.package", "--out", str(out)], cwd=PROJECT_DIR,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    return {"dir": out, "template": json.loads((out / "sam.json").read_text()), "stdout": run.stdout}


def check(template: dict[str, Any]) -> list[str]:
    return problems(template, SECRETS, TTL)


def test_the_committed_merge_template_is_the_codes() -> None:
    assert MERGE_FILE.read_text(encoding="utf-8") == render(current()), \
        "infra/aws/resources.json is stale: run `python -m infra.aws.template`"


def test_make_package_reports_a_zip_under_15_mb(packaged: dict[str, Any]) -> None:
    zip_path: Path = packaged["dir"] / "deployment.zip"
    assert "MB zipped" in packaged["stdout"]
    assert zip_path.stat().st_size < 15e6
    import zipfile

    names = zipfile.ZipFile(zip_path).namelist()
    assert "app.py" in names and "chalicelib/api/leave.py" in names and "chalice/app.py" in names
    assert not any(n.startswith(("botocore/", "boto3/")) for n in names)  # the runtime has them
    runtime = packaged["template"]["Resources"]["APIHandler"]["Properties"]["Runtime"]
    tag = "cpython-" + runtime.removeprefix("python").replace(".", "")
    assert any(n.startswith("pydantic_core/") and tag in n for n in names), "binary wheels for the runtime"


def test_the_zip_holds_every_module_the_code_imports(packaged: dict[str, Any]) -> None:
    import ast
    import zipfile

    names = zipfile.ZipFile(packaged["dir"] / "deployment.zip").namelist()
    top_level = {n.split("/")[0].removesuffix(".py") for n in names}
    imported: set[str] = set()
    for path in [PROJECT_DIR / "app.py", *(PROJECT_DIR / "chalicelib").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    runtime_provided = {"boto3", "botocore"}
    third_party = imported - set(sys.stdlib_module_names) - runtime_provided - {"chalicelib", "__future__"}
    assert {"chalice", "pynamodb", "pydantic", "aws_lambda_powertools"} <= third_party
    assert third_party - top_level == set(), "imported by the code but not in the Lambda zip"


def sam_translated(template: dict[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation sees it after the SAM transform (the code's S3 location is
    a placeholder: `aws cloudformation package` fills it in)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    sam = copy.deepcopy(template)
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://campus-platform-code/deployment.zip"
    from samtranslator.translator import arn_generator

    # The translator asks boto3 for a region to name partitions by; no AWS is called.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "cn-north-1")
        arn_generator._get_region_from_session.cache_clear()
        return transform(sam, {}, NoManagedPolicies())


def test_cfn_lint_passes_on_the_template_and_on_its_sam_translation(packaged: dict[str, Any]) -> None:
    lint = Path(sys.executable).with_name("cfn-lint")
    translated = packaged["dir"] / "translated.json"
    translated.write_text(json.dumps(sam_translated(packaged["template"])))
    for template in (packaged["dir"] / "sam.json", translated):
        run = subprocess.run([str(lint), str(template)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr


def test_after_the_transform_every_sqs_mapping_reports_failures_and_waits_for_its_permission(
        packaged: dict[str, Any]) -> None:
    resources = sam_translated(packaged["template"])["Resources"]
    mappings = {n: r for n, r in resources.items() if r["Type"] == "AWS::Lambda::EventSourceMapping"}
    assert len(mappings) == len(QUEUES)
    for name, mapping in mappings.items():
        assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"], name
        function = mapping["Properties"]["FunctionName"]["Ref"]
        assert "ResourcePolicy" in resources[function]["DependsOn"], name


def test_the_packaged_template_keeps_every_rule(packaged: dict[str, Any]) -> None:
    assert check(packaged["template"]) == []


def test_every_table_queue_consumer_and_alarm_is_there(packaged: dict[str, Any]) -> None:
    resources = packaged["template"]["Resources"]
    tables = {r["Properties"]["TableName"] for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table"}
    assert tables == {f"{PREFIX}{logical_name(m)}" for m in TABLE_MODELS}
    queues = {r["Properties"]["QueueName"] for r in resources.values() if r["Type"] == "AWS::SQS::Queue"}
    assert queues == {s.name for s in QUEUES} | {s.dlq_name for s in QUEUES}
    consumers = [n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"
                 and any(e["Type"] == "SQS" for e in r["Properties"].get("Events", {}).values())]
    assert len(consumers) == len(QUEUES)
    for name in consumers:
        assert resources[name]["DependsOn"], name  # created after its queue
    assert resources["RestAPI"]["Properties"]["EndpointConfiguration"] == "REGIONAL"
    env = resources["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert env["SECRETS_PARAMETER_PATH"] == "/campus-platform/prod/" and env["STAGE"] == "prod"


# -- each rule bites ------------------------------------------------------------------------------
def drop_a_dlq(t: dict) -> None:
    del t["Resources"]["QueueNotifications"]["Properties"]["RedrivePolicy"]


def widen_a_resource(t: dict) -> None:
    t["Resources"]["ResourcePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Resource"] = "*"


def widen_an_arn(t: dict) -> None:
    t["Resources"]["ResourcePolicy"]["Properties"]["PolicyDocument"]["Statement"][1]["Resource"] = [
        {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:*"}]


def every_action(t: dict) -> None:
    t["Resources"]["ResourcePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Action"] = ["dynamodb:*"]


def chalices_sqs_wildcard(t: dict) -> None:
    t["Resources"]["DefaultRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage"], "Resource": "*"})


def no_batch_failures(t: dict) -> None:
    events = t["Resources"]["SyncDoorPass"]["Properties"]["Events"]
    del events["SyncDoorPassSqsEventSource"]["Properties"]["FunctionResponseTypes"]


def short_visibility(t: dict) -> None:
    t["Resources"]["QueueHealthAlerts"]["Properties"]["VisibilityTimeout"] = 30


def long_consumer(t: dict) -> None:
    t["Resources"]["FanOutNotice"]["Properties"]["Timeout"] = 900


def pitr_off(t: dict) -> None:
    t["Resources"]["TableHealthReports"]["Properties"]["PointInTimeRecoverySpecification"][
        "PointInTimeRecoveryEnabled"] = False


def no_ttl(t: dict) -> None:
    del t["Resources"]["TableAbsenceDays"]["Properties"]["TimeToLiveSpecification"]


def provisioned(t: dict) -> None:
    t["Resources"]["TableKv"]["Properties"]["BillingMode"] = "PROVISIONED"


def no_dlq_alarm(t: dict) -> None:
    del t["Resources"]["AlarmQueueDoorSyncDlq"]


def no_error_alarm(t: dict) -> None:
    del t["Resources"]["AlarmRaiseHealthAlertErrors"]


def secret_in_env(t: dict) -> None:
    t["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]["WECOM_SECRET"] = "plain"


def no_throttling(t: dict) -> None:
    del t["Resources"]["RestAPI"]["Properties"]["MethodSettings"]


def edge_api(t: dict) -> None:
    t["Resources"]["RestAPI"]["Properties"]["EndpointConfiguration"] = "EDGE"


def missing_table(t: dict) -> None:
    del t["Resources"]["TableAbsences"]


def every_table(t: dict) -> None:
    t["Resources"]["ResourcePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Resource"] = [
        {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"}]


def item_wildcard(t: dict) -> None:
    t["Resources"]["ResourcePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Action"] = ["dynamodb:*Item"]


def mapping_before_policy(t: dict) -> None:
    t["Resources"]["SendNotifications"]["DependsOn"] = ["QueueNotifications"]


def admin_policy(t: dict) -> None:
    t["Resources"]["DefaultRole"]["Properties"]["ManagedPolicyArns"] = ["arn:aws:iam::aws:policy/AdministratorAccess"]


def keep_abandoned_uploads(t: dict) -> None:
    rules = t["Resources"]["UploadsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    rules[:] = [r for r in rules if "TagFilters" not in r]


def public_bucket(t: dict) -> None:
    t["Resources"]["UploadsBucket"]["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] = False


@pytest.mark.parametrize(("breakage", "expected"), [
    (keep_abandoned_uploads, "UploadsBucket: uploads never filed are never deleted"),
    (public_bucket, "UploadsBucket: public access is not blocked"),
    (drop_a_dlq, "QueueNotifications: a queue without a dead-letter queue"),
    (widen_a_resource, "wildcard resource"),
    (widen_an_arn, "wildcard resource"),
    (every_action, "every action"),
    (chalices_sqs_wildcard, "DefaultRole"),
    (no_batch_failures, "SyncDoorPass.SyncDoorPassSqsEventSource"),
    (short_visibility, "QueueHealthAlerts: visibility timeout"),
    (long_consumer, "QueueNoticeFanout: visibility timeout"),
    (pitr_off, "TableHealthReports: point-in-time recovery"),
    (no_ttl, "TableAbsenceDays: records expire"),
    (provisioned, "TableKv: not on-demand"),
    (no_dlq_alarm, "QueueDoorSyncDlq: a dead-letter queue without an alarm"),
    (no_error_alarm, "RaiseHealthAlert: a consumer without an error alarm"),
    (secret_in_env, "WECOM_SECRET"),
    (no_throttling, "RestAPI: no throttling"),
    (edge_api, "RestAPI: not a regional endpoint"),
    (missing_table, "campus-prod-absences: a table of the code"),
    (admin_policy, "managed policies"),
    (every_table, "wildcard resource"),
    (item_wildcard, "every action matching"),
    (mapping_before_policy, "SendNotifications: its event source may be created before the policy"),
], ids=lambda v: v.__name__ if callable(v) else "")
def test_breaking_a_rule_fails(packaged: dict[str, Any], breakage: Callable[[dict], None], expected: str) -> None:
    broken = copy.deepcopy(packaged["template"])
    breakage(broken)
    found = check(broken)
    assert any(expected in p for p in found), found


# -- one source of truth: the local stack's tables and queues are the template's -------------------
def test_the_local_stack_creates_what_the_template_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.local.aws import create_queues, create_tables

    template = json.loads(MERGE_FILE.read_text(encoding="utf-8"))["Resources"]
    monkeypatch.setenv("STAGE", "local")
    monkeypatch.setenv("TABLE_PREFIX", "campus-local-")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        create_tables(TABLE_MODELS)
        dynamodb = boto3.client("dynamodb")
        for model in TABLE_MODELS:
            name = logical_name(model)
            declared = template[f"Table{cfn_name(name)}"]["Properties"]
            table = dynamodb.describe_table(TableName=f"campus-local-{name}")["Table"]
            assert sorted(map(tuple, (k.values() for k in table["KeySchema"]))) == \
                sorted(map(tuple, (k.values() for k in declared["KeySchema"]))), name
            live_indexes = {i["IndexName"]: (sorted(map(tuple, (k.values() for k in i["KeySchema"]))),
                                             i["Projection"]["ProjectionType"])
                            for i in table.get("GlobalSecondaryIndexes", [])}
            declared_indexes = {i["IndexName"]: (sorted(map(tuple, (k.values() for k in i["KeySchema"]))),
                                                 i["Projection"]["ProjectionType"])
                                for i in declared.get("GlobalSecondaryIndexes", [])}
            assert live_indexes == declared_indexes, name
            ttl = dynamodb.describe_time_to_live(TableName=f"campus-local-{name}")["TimeToLiveDescription"]
            wanted = declared.get("TimeToLiveSpecification", {}).get("AttributeName")
            assert ttl.get("AttributeName") == wanted, name
        sqs = boto3.client("sqs")
        create_queues(sqs, QUEUES)
        for spec in QUEUES:
            declared = template[f"Queue{cfn_name(spec.key)}"]["Properties"]
            url = sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            redrive = json.loads(attributes["RedrivePolicy"])
            assert declared["QueueName"] == spec.name
            assert int(attributes["VisibilityTimeout"]) == declared["VisibilityTimeout"]
            assert int(redrive["maxReceiveCount"]) == declared["RedrivePolicy"]["maxReceiveCount"]
            assert redrive["deadLetterTargetArn"].endswith(":" + template[f"Queue{cfn_name(spec.key)}Dlq"][
                "Properties"]["QueueName"])
