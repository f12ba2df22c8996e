"""Area hooks: run after each stored transition; one that fails is retried from the hall-hooks queue."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from chalice.test import Client

from chalicelib.api import deps
from chalicelib.domain.access import Actor
from chalicelib.domain.forms import ServiceDefinition
from chalicelib.domain.hall import on_transition
from chalicelib.domain.workflow import Applicant, Application, ChainStep, Transition, decide, file_application
from chalicelib.resources import HALL_HOOKS, QUEUES
from infra.local.aws import create_queues
from tests.conftest import PROJECT_DIR
from tests.support.hall import queued_notifications
from tests.support.identity import call, load_cast, login

AREA = "test_hooks"
SEEN: list[tuple[str, str]] = []
FAILURES: list[str] = []  # the hook fails while this holds something


@on_transition(AREA)
def record_transition(app: Application, transition: Transition) -> None:
    if FAILURES:
        FAILURES.pop()
        raise RuntimeError("the area's store is unavailable")
    SEEN.append((app.app_id, transition.verb))


DEFINITION = ServiceDefinition.model_validate({
    "id": "test-hooked", "name": "测试钩子", "category": "life", "applicants": {"types": ["student"]},
    "fields": [{"name": "note", "label": "说明", "type": "text", "required": True}],
    "steps": [{"name": "后勤", "approver": "role:logistics"}], "area": AREA,
})
ADMIN = Actor(userid="admin", person_type="staff", department="nic", roles=frozenset({"it_admin"}))


@pytest.fixture(autouse=True)
def setting() -> None:
    SEEN.clear()
    FAILURES.clear()
    load_cast()
    create_queues(boto3.client("sqs"), QUEUES)
    deps.catalogue().put(DEFINITION, ADMIN, datetime.now(timezone.utc))


def queued_retries() -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=HALL_HOOKS.name)["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def sqs_event(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": [{"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": json.dumps(body),
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                         "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{HALL_HOOKS.name}",
                         "awsRegion": "us-east-1"} for i, body in enumerate(bodies)]}


def test_hooks_see_every_transition_and_a_failed_one_is_retried_from_the_queue(client: Client) -> None:
    student, logistics = login(client, "s001"), login(client, "hq01")
    # Given the area's hook runs on filing
    status, app = call(client, "POST", "/services/test-hooked/applications", student, {"data": {"note": "灯坏了"}})
    assert status == 201 and SEEN == [(app["id"], "file")]
    # When it fails on the approval, the approval still stands and the transition is queued
    FAILURES.append("once")
    status, app = call(client, "POST", f"/applications/{app['id']}/decisions", logistics, {"decision": "approve"})
    assert (status, app["status"]) == (200, "approved")
    retries = queued_retries()
    assert retries == [{"app_id": app["id"], "version": 2}]
    # Then the consumer runs the hook for that transition, and a second delivery is harmless to it
    assert client.lambda_.invoke("rerun_transition_hooks", sqs_event(retries)).payload == {"batchItemFailures": []}
    assert SEEN == [(app["id"], "file"), (app["id"], "approve")]
    # and the approval's messages were queued by the retry too, once whatever the deliveries
    assert client.lambda_.invoke("rerun_transition_hooks", sqs_event(retries)).payload == {"batchItemFailures": []}
    # (inline before the hook failed, then once per delivery: always the same key, which the
    # notifications consumer's outbox sends once)
    keys = [n["key"] for n in queued_notifications() if ":v2:" in n["key"]]
    assert keys == [f"app:{app['id']}:v2:applicant"] * 3


def test_records_whose_hooks_fail_are_reported_one_by_one(client: Client) -> None:
    student = Actor(userid="s001", person_type="student", department="cs", class_id="cs2001")
    app, _ = deps.hall().file(student, "test-hooked", {"note": "x"})
    SEEN.clear()
    # Given a batch with a good retry and one naming a transition that does not exist
    answer = client.lambda_.invoke("rerun_transition_hooks", sqs_event([{"app_id": app.app_id, "version": 1},
                                                                         {"app_id": app.app_id, "version": 7}]))
    # Then the good one ran and only the other is reported for redelivery (then the DLQ)
    assert answer.payload == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert SEEN == [(app.app_id, "file")]
    # and when every record fails, the whole batch fails (Lambda's rule for an all-failed batch)
    FAILURES.extend(["again"])
    with pytest.raises(BatchProcessingError):
        client.lambda_.invoke("rerun_transition_hooks", sqs_event([{"app_id": app.app_id, "version": 1}]))


def test_the_sample_event_in_events_folder_runs_the_hooks_of_its_transition(client: Client) -> None:
    # Given the application the sample names, filed and then approved (version 2)
    applicant = Applicant("s001", "student", "cs", "cs2001")
    chain = (ChainStep(name="后勤", authority="role:logistics"),)
    filed = file_application(DEFINITION, applicant, {"note": "x"}, chain, datetime(2026, 12, 1, tzinfo=timezone.utc),
                             app_id="20261201T080000-0123456789ab")
    approver = Actor(userid="hq01", person_type="staff", department="hq", roles=frozenset({"logistics"}))
    approved = decide(filed, approver, "approve", "", datetime(2026, 12, 1, 1, tzinfo=timezone.utc))
    deps.applications().save(filed, None)
    deps.applications().save(approved, filed.version)
    event = json.loads((PROJECT_DIR / "events" / "sqs_hall_hooks_retry.json").read_text())
    # When the consumer runs the sample, then the hook sees the approval
    assert client.lambda_.invoke("rerun_transition_hooks", event).payload == {"batchItemFailures": []}
    assert SEEN == [(filed.app_id, "approve")]
