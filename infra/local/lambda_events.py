"""Lambda event payloads exactly as AWS delivers them, for the local stack and the tests.

Built here once so that the SQS poller, the scheduler, ``make fire`` and the tests hand consumers
and jobs the same shapes Lambda does (every SQS record with its own ``messageId``, which
``chalice.test.Client.events.generate_sqs_event`` does not give).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

LOCAL_ACCOUNT = "000000000000"


def sqs_record(
    body: str,
    *,
    queue_arn: str,
    region: str,
    message_id: str | None = None,
    receipt_handle: str | None = None,
    attributes: Mapping[str, str] | None = None,
    message_attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One record of an SQS event; ids are unique unless given."""
    now_ms = str(int(datetime.now(timezone.utc).timestamp() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or uuid.uuid4().hex,
        "body": body,
        "attributes": dict(
            attributes
            or {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": now_ms,
                "SenderId": LOCAL_ACCOUNT,
                "ApproximateFirstReceiveTimestamp": now_ms,
            }
        ),
        "messageAttributes": _lambda_message_attributes(message_attributes or {}),
        "md5OfBody": hashlib.md5(body.encode("utf-8")).hexdigest(),  # noqa: S324 (SQS's own checksum)
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def sqs_event_from_messages(messages: Iterable[Mapping[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """The Lambda event for messages as returned by SQS ``ReceiveMessage``."""
    return {
        "Records": [
            sqs_record(
                m["Body"],
                queue_arn=queue_arn,
                region=region,
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                attributes=m.get("Attributes"),
                message_attributes=m.get("MessageAttributes"),
            )
            for m in messages
        ]
    }


def sqs_event(bodies: Iterable[str], *, queue_name: str, region: str = "us-east-1") -> dict[str, Any]:
    """An SQS event with one record per body, each with a unique message id (for tests)."""
    arn = queue_arn(queue_name, region)
    return {"Records": [sqs_record(body, queue_arn=arn, region=region) for body in bodies]}


def scheduled_event(rule_arn: str, *, region: str, at: datetime | None = None) -> dict[str, Any]:
    """The EventBridge "Scheduled Event" payload a scheduled Lambda receives."""
    moment = (at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def queue_arn(queue_name: str, region: str) -> str:
    return f"arn:aws:sqs:{region}:{LOCAL_ACCOUNT}:{queue_name}"


def rule_arn(rule_name: str, region: str) -> str:
    return f"arn:aws:events:{region}:{LOCAL_ACCOUNT}:rule/{rule_name}"


def _lambda_message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    # SQS answers with StringValue/DataType; Lambda hands consumers stringValue/dataType.
    converted = {}
    for name, value in attributes.items():
        converted[name] = {
            "stringValue": value.get("StringValue", value.get("stringValue")),
            "binaryValue": value.get("BinaryValue", value.get("binaryValue")),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", value.get("dataType", "String")),
        }
    return converted
