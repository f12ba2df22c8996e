"""Helpers for campus-entry and door tests: a visitor's form, the door-sync queue, a mocked gateway."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from chalice.test import Client

from chalicelib.domain.identity import id_check_char
from chalicelib.resources import DOOR_SYNC
from tests.conftest import stage_environment
from tests.support.identity import call

GATEWAY_URL = stage_environment()["DOOR_GATEWAY_URL"].rstrip("/")
GATEWAY_SECRET = stage_environment()["DOOR_GATEWAY_SECRET"]
WEBHOOK_SECRET = stage_environment()["DOOR_WEBHOOK_SECRET"]


def id_number(serial: int = 123) -> str:
    first17 = f"37010219900101{serial:03d}"
    return first17 + id_check_char(first17)


def visitor_form(start: datetime, hours: float = 8, **changes: Any) -> dict[str, Any]:
    form = {"name": "王访客", "id_number": id_number(), "mobile": "13912345678", "organisation": "山东大学",
            "reason": "学术交流", "host": "t001", "visit_start": start.isoformat(),
            "visit_end": (start + timedelta(hours=hours)).isoformat(), "gates": ["east", "south"],
            "health_code": "green", "pledge": True}
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def apply(client: Client, form: dict[str, Any], ip: str | None = None) -> tuple[int, Any]:
    return call(client, "POST", "/visitor/entry-applications", body=form)


def decide(client: Client, token: str, app_id: str, decision: str = "approve") -> dict:
    status, body = call(client, "POST", f"/applications/{app_id}/decisions", token, {"decision": decision})
    assert status == 200, body
    return body


def door_sync_messages() -> list[dict[str, Any]]:
    """The door-sync messages now visible, received (not deleted): as Lambda would get them."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=DOOR_SYNC.name)["QueueUrl"]
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                    VisibilityTimeout=30).get("Messages", [])
        if not batch:
            return found
        found.extend(batch)


def door_sync_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event of received messages, with their real receipt handles and receive counts."""
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                         "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                                        "SentTimestamp": m["Attributes"]["SentTimestamp"]},
                         "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                         "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{DOOR_SYNC.name}",
                         "awsRegion": "us-east-1"} for m in messages]}


def run_door_sync(client: Client) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Deliver every visible door-sync message to the consumer; delete what it handled (as the
    Lambda poller does). Returns the message bodies and the consumer's answer."""
    messages = door_sync_messages()
    if not messages:
        return [], {"batchItemFailures": []}
    try:
        answer = client.lambda_.invoke("sync_door_pass", door_sync_event(messages)).payload
    except BatchProcessingError:  # Powertools raises when every record failed: Lambda retries them all
        answer = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages]}
    failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=DOOR_SYNC.name)["QueueUrl"]
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        else:
            _in_flight_handles.append(m["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in messages], answer


def make_visible() -> None:
    """Let every in-flight door-sync message be received again now (the backoff has passed)."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=DOOR_SYNC.name)["QueueUrl"]
    for handle in _in_flight_handles:
        try:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
        except Exception:  # deleted meanwhile
            pass
    _in_flight_handles.clear()


_in_flight_handles: list[str] = []
