"""The local poller against real SQS semantics (moto): partial batch failures, redelivery, DLQ."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import boto3
import pytest
import time_machine

from infra.local.aws import create_queues
from infra.local.poller import QueuePoller
from tests.support.sample_project import app as sample
from tests.support.sample_project.resources import QUEUES


@pytest.fixture
def sqs():
    return boto3.client("sqs")


@pytest.fixture
def queues(sqs):
    return create_queues(sqs, QUEUES)


def make_poller(sqs, queues, handler=None) -> QueuePoller:
    source = next(s for s in sample.app.event_sources if s.name == "run_sample_jobs")
    queue = queues[source.queue]
    return QueuePoller(
        sqs,
        source,
        handler or sample.app.handler_map[source.name],
        queue_url=queue.url,
        queue_arn=queue.arn,
        region="us-east-1",
        function_name="sample-local-run_sample_jobs",
        stop=threading.Event(),
        wait_seconds=0,
    )


def send(sqs, queues, **message) -> str:
    return sqs.send_message(QueueUrl=queues["sample-jobs"].url, MessageBody=json.dumps(message))["MessageId"]


def drain(sqs, url) -> list[dict]:
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_failed_records_and_only_those_are_redelivered_until_the_dlq(sqs, queues):
    with time_machine.travel(datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc), tick=False) as clock:
        # Given three messages: one fine, one failing once, one failing for ever
        ok = send(sqs, queues, id="ok")
        flaky = send(sqs, queues, id="flaky", fail_times=1)
        broken = send(sqs, queues, id="broken", fail_times=99)
        poller = make_poller(sqs, queues)

        # When the poller delivers the batch, then only the successful record is deleted
        first = poller.poll_once()
        assert sorted(first.received) == sorted([ok, flaky, broken])
        assert sorted(first.failed) == sorted([flaky, broken])
        assert first.deleted == [ok]
        # and nothing is visible until the visibility timeout ends
        assert poller.poll_once().received == []

        # When the timeout passes, exactly the failed records come back
        clock.shift(2)
        second = poller.poll_once()
        assert sorted(second.received) == sorted([flaky, broken])
        assert second.failed == [broken]

        # When the broken one has been received maxReceiveCount times, SQS moves it to the DLQ
        clock.shift(2)
        assert poller.poll_once().received == []

        # Then every message is accounted for: two processed (on the receipt they succeeded), one dead
        results = drain(sqs, queues["sample-results"].url)
        assert sorted((r["id"], r["receive_count"]) for r in results) == [("flaky", 2), ("ok", 1)]
        dead = drain(sqs, queues["sample-jobs"].dlq_url)
        assert [d["id"] for d in dead] == ["broken"]


def test_a_crashing_consumer_fails_the_whole_batch(sqs, queues):
    with time_machine.travel(datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc), tick=False) as clock:
        ids = {send(sqs, queues, id=f"m{n}") for n in range(3)}

        def crash(event, context):
            raise RuntimeError("consumer crashed")

        outcome = make_poller(sqs, queues, crash).poll_once()
        assert set(outcome.failed) == ids and outcome.deleted == []
        clock.shift(2)
        # Given the consumer recovered, when the batch is redelivered, then every message is processed
        assert set(make_poller(sqs, queues).poll_once().deleted) == ids


def test_every_record_handed_to_the_consumer_has_its_own_message_id(sqs, queues):
    seen: list[list[str]] = []

    def capture(event, context):
        seen.append([r["messageId"] for r in event["Records"]])
        assert all(r["eventSource"] == "aws:sqs" and r["eventSourceARN"].endswith(":sample-jobs")
                   for r in event["Records"])
        return {"batchItemFailures": []}

    for n in range(5):
        send(sqs, queues, id=f"m{n}")
    make_poller(sqs, queues, capture).poll_once()
    assert len(seen[0]) == 5 and len(set(seen[0])) == 5
