"""Helpers for health reporting tests: answers, consent, filing, and the alerts queue."""

from __future__ import annotations

import json
import uuid
from typing import Any

from chalice.test import Client

from chalicelib.resources import HEALTH_ALERTS
from tests.support.hall import take_messages
from tests.support.identity import call

NORMAL: dict[str, Any] = {
    "temperature": 36.5,
    "symptoms": ["none"],
    "whereabouts": "on_campus",
    "health_code": "green",
    "close_contact": False,
    "risk_area": False,
    "quarantined": False,
    "pledge": True,
}
FEVER: dict[str, Any] = {**NORMAL, "temperature": 38.1, "symptoms": ["fever", "cough"]}


def consent(client: Client, token: str) -> None:
    status, text = call(client, "GET", "/health/consent", token)
    assert status == 200, text
    status, body = call(client, "POST", "/health/consent", token, {"version": text["version"], "agree": True})
    assert status == 200, body


def file_report(client: Client, token: str, answers: dict[str, Any]) -> tuple[int, Any]:
    return call(client, "POST", "/health/reports", token, answers)


def queued_alerts() -> list[dict[str, Any]]:
    """The health alerts waiting on their queue (bodies), taken off it."""
    return [json.loads(m["Body"]) for m in take_messages(HEALTH_ALERTS.name)]


def sqs_event(queue_name: str, bodies: list[Any]) -> dict[str, Any]:
    """An SQS event as Lambda delivers it to a consumer (each record its own message id)."""
    return {"Records": [{"messageId": str(uuid.uuid4()), "receiptHandle": f"handle-{i}",
                         "body": body if isinstance(body, str) else json.dumps(body),
                         "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1796083200000"},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue_name}",
                         "awsRegion": "us-east-1"} for i, body in enumerate(bodies)]}


def scheduled_event(function: str) -> dict[str, Any]:
    """An EventBridge scheduled event, as the rule of ``function`` delivers it."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-30T06:00:00Z", "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:123456789012:rule/campus-platform-dev-{function}"],
            "detail": {}}
