"""Helpers for the service hall's integration tests: the cast logged in on demand, queues, messages."""

from __future__ import annotations

import json
from typing import Any

import boto3
from chalice.test import Client

from chalicelib.resources import NOTIFICATIONS, QUEUES
from infra.local.aws import create_queues
from tests.support.identity import load_cast, login


class Tokens(dict[str, str]):
    """Session tokens of the demo cast, each logged in on first use (a test pays only for whom it needs)."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client

    def __missing__(self, userid: str) -> str:
        self[userid] = login(self.client, userid)
        return self[userid]


def open_campus(client: Client) -> Tokens:
    """The demo cast in the directory and every queue created (so messages can be published)."""
    load_cast()
    create_queues(boto3.client("sqs"), QUEUES)
    return Tokens(client)


def queued_notifications() -> list[dict[str, Any]]:
    """Every notification part waiting on the queue, taken off it (read and deleted)."""
    return [json.loads(m["Body"]) for m in take_messages(NOTIFICATIONS.name)]


def take_messages(queue_name: str) -> list[dict[str, Any]]:
    """Every message waiting on a queue (as SQS returns them), taken off it."""
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
