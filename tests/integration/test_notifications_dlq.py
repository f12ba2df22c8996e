"""A WeCom outage that outlasts every retry: the real consumer behind the local poller, real SQS
redrive (moto) into the DLQ, and the outbox row marked failed."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import datetime, timezone

import boto3
import time_machine

from app import app
from chalicelib.db.messaging import OutboxRepository
from chalicelib.domain.notifications import Notification, split
from chalicelib.resources import NOTIFICATIONS
from infra.local.aws import create_queues
from infra.local.poller import QueuePoller
from tests.conftest import stage_environment


def test_an_outage_ends_in_the_dlq_with_the_outbox_marked_failed(monkeypatch, client):
    from infra.local.fake_wecom import FakeWeCom

    env = stage_environment("local")
    fake = FakeWeCom(env["WECOM_CORP_ID"], env["WECOM_SECRET"], agent_id=env["WECOM_AGENT_ID"])
    monkeypatch.setenv("WECOM_API_BASE", fake.start())
    monkeypatch.setattr("chalicelib.integrations.wecom.time.sleep", lambda seconds: None)
    try:
        # Given the notifications queue (short visibility for the test) and WeCom down for good
        spec = dataclasses.replace(NOTIFICATIONS, visibility_timeout=1)
        sqs = boto3.client("sqs")
        queue = create_queues(sqs, [spec])[spec.name]
        fake.outage(10_000)
        part = split(Notification(key="k:dlq", recipients=("s001",), body="停电通知"))[0]
        sqs.send_message(QueueUrl=queue.url, MessageBody=part.model_dump_json())
        source = next(s for s in app.event_sources if s.name == "send_notifications")
        poller = QueuePoller(sqs, source, _invoke_via(client), queue_url=queue.url,
                             queue_arn=queue.arn, region="us-east-1", function_name="send_notifications",
                             stop=threading.Event(), wait_seconds=0)
        # When SQS delivers it max_receive_count times, once per visibility timeout
        with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc), tick=False) as clock:
            for _ in range(spec.max_receive_count):
                outcome = poller.poll_once()
                assert outcome.failed == outcome.received and len(outcome.received) == 1
                clock.shift(2)
            assert poller.poll_once().received == []  # gone from the queue...
            dead = sqs.receive_message(QueueUrl=queue.dlq_url).get("Messages", [])
        # Then it sits in the DLQ, whole, and the outbox says failed
        assert [json.loads(m["Body"])["key"] for m in dead] == ["k:dlq"]
        assert OutboxRepository().get(part.part_key).status == "failed"
        assert fake.sent == []
    finally:
        fake.stop()


def _invoke_via(client):
    def handler(event, context):
        return client.lambda_.invoke("send_notifications", event).payload
    return handler
