"""Helpers for health reporting tests: answers, consent, filing, and the alerts queue."""

from __future__ import annotations

import json
from typing import Any

import boto3
from chalice.test import Client

from chalicelib.resources import HEALTH_ALERTS
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


def take_messages(queue_name: str) -> list[dict[str, Any]]:
    """Every message waiting on a queue, as (body, message id) records, taken off it."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    found: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def queued_alerts() -> list[dict[str, Any]]:
    """The health alerts waiting on their queue (bodies), taken off it."""
    return [json.loads(m["Body"]) for m in take_messages(HEALTH_ALERTS.name)]
