"""The hall when things go wrong: a new catalogue version mid-flight, a queue outage after a filing."""

from __future__ import annotations

import json
from dataclasses import replace

import boto3
import pytest

from chalicelib.api import deps
from chalicelib.db.hall import ServiceRepository
from chalicelib.domain.access import Actor
from chalicelib.domain.forms import ServiceDefinition
from chalicelib.domain.hall import Catalogue
from chalicelib.resources import HALL_HOOKS, QUEUES
from infra.local.aws import create_queues
from tests.support.identity import load_cast

V1 = ServiceDefinition.model_validate({
    "id": "test-certificate", "version": 1, "name": "测试证明", "category": "teaching",
    "applicants": {"types": ["student"]},
    "fields": [{"name": "copies", "label": "份数", "type": "number", "integer": True, "min": 1, "max": 5,
                "required": True}],
    "steps": [{"name": "辅导员", "approver": "counselor_of_applicant"}],
})
STUDENT = Actor(userid="s001", person_type="student", department="cs", class_id="cs2001")
COUNSELOR = Actor(userid="fdy01", person_type="staff", department="cs", roles=frozenset({"counselor"}),
                  counselor_of=frozenset({"cs2001"}))


@pytest.fixture(autouse=True)
def campus() -> None:
    load_cast()
    create_queues(boto3.client("sqs"), QUEUES)


def hall_with(shipped: dict[str, ServiceDefinition]):
    return replace(deps.hall(), catalogue=Catalogue(shipped, ServiceRepository()))


def test_applications_filed_under_a_shipped_version_survive_a_deploy_of_the_next() -> None:
    # Given an application filed under shipped version 1, returned for edits
    before = hall_with({V1.id: V1})
    app, _ = before.file(STUDENT, V1.id, {"copies": 2})
    before.decide(COUNSELOR, app.app_id, "return", "再核对")
    # When a deploy ships version 2 (a different form) and the student resends, the counselor decides
    v2 = V1.model_copy(update={"version": 2, "steps": ()})
    after = hall_with({V1.id: v2})
    resent = after.resubmit(STUDENT, app.app_id, {"copies": 3})
    decided = after.decide(COUNSELOR, app.app_id, "approve", "")
    # Then version 1 (pinned when filed) still governs it: its counselor step, its form
    assert (resent.service_version, resent.data, decided.status) == (1, {"copies": 3}, "approved")
    assert ServiceRepository().get(V1.id, 1) == V1
    # and new filings take version 2
    assert after.file(STUDENT, V1.id, {"copies": 1})[0].status == "approved"


def test_a_queue_outage_after_filing_neither_loses_the_effects_nor_files_twice() -> None:
    calls = {"n": 0}

    def flaky_notify(notification):
        calls["n"] += 1
        raise ConnectionError("SQS is unreachable")

    hall = replace(hall_with({V1.id: V1}), notify=flaky_notify)
    # Given a filing whose messages cannot be queued
    app, replayed = hall.file(STUDENT, V1.id, {"copies": 1}, idempotency_key="k-1")
    # Then the application stands, its effects wait on the hooks queue, and a retry of the same
    # submission answers with it instead of filing again
    assert not replayed and calls["n"] == 1
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=HALL_HOOKS.name)["QueueUrl"]
    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert bodies == [{"app_id": app.app_id, "version": 1}]
    again, replayed = hall.file(STUDENT, V1.id, {"copies": 1}, idempotency_key="k-1")
    assert replayed and again.app_id == app.app_id
    assert [a.app_id for a in hall.mine(STUDENT, 10, None)[0]] == [app.app_id]
