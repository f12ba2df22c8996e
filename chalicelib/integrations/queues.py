"""Publishing to the platform's SQS queues: the one place that sends messages.

The SQS client is built once, on first use; queue URLs are looked up once per queue name.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.resources import QueueSpec

MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds


@functools.cache
def sqs_client() -> Any:
    return boto3.client("sqs", config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"}))


@functools.lru_cache(maxsize=32)
def queue_url(queue_name: str) -> str:
    return sqs_client().get_queue_url(QueueName=queue_name)["QueueUrl"]


def publish(spec: QueueSpec, message: Mapping[str, Any], *, delay_seconds: int = 0) -> str:
    """Send one JSON message; returns its SQS message id."""
    answer = sqs_client().send_message(
        QueueUrl=queue_url(spec.name),
        MessageBody=json.dumps(message, ensure_ascii=False, separators=(",", ":")),
        DelaySeconds=max(0, min(int(delay_seconds), MAX_DELAY_SECONDS)),
    )
    return answer["MessageId"]


def publish_many(spec: QueueSpec, messages: Sequence[Mapping[str, Any]], *, delay_seconds: int = 0) -> None:
    """Send messages in batches of 10 (SQS's limit), retrying entries SQS reports as failed.

    Raises:
        RuntimeError: some entries still failed after retries (the caller's retry resends them).
    """
    for start in range(0, len(messages), 10):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps(m, ensure_ascii=False, separators=(",", ":")),
             "DelaySeconds": max(0, min(int(delay_seconds), MAX_DELAY_SECONDS))}
            for i, m in enumerate(messages[start : start + 10])
        ]
        for _ in range(3):
            answer = sqs_client().send_message_batch(QueueUrl=queue_url(spec.name), Entries=entries)
            failed = {f["Id"] for f in answer.get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                break
        if entries:
            raise RuntimeError(f"{len(entries)} message(s) to {spec.name} could not be sent")


def retry_after(spec: QueueSpec, receipt_handle: str, seconds: int) -> None:
    """Make a received message visible again after ``seconds`` (a consumer's backoff)."""
    sqs_client().change_message_visibility(QueueUrl=queue_url(spec.name), ReceiptHandle=receipt_handle,
                                           VisibilityTimeout=max(0, min(int(seconds), 43_200)))
