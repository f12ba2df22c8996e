"""Deliver SQS messages to the app's consumers the way Lambda's event source mapping does.

Semantics kept from AWS (with ``ReportBatchItemFailures`` on, as the deployment template sets):

* a batch is at most ``batch_size`` messages (10 per receive);
* the consumer returns ``{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}``: every
  other message of the batch is deleted, the failed ones are left alone so SQS redelivers them when
  their visibility timeout ends, and after ``maxReceiveCount`` receipts SQS moves them to the DLQ;
* a failure entry that names no message of the batch, or a consumer that raises, fails the whole
  batch (nothing is deleted).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalice.app import SQSEventConfig
from chalice.local import LambdaContext

from infra.local.lambda_events import sqs_event_from_messages
from infra.local.log import log

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class BatchOutcome:
    """What happened to one received batch."""

    received: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    error: str | None = None


def failed_ids(result: Any, message_ids: list[str]) -> tuple[list[str], str | None]:
    """The message ids a consumer reported as failed, or all of them when the report is unusable."""
    if result is None:
        return [], None
    if not isinstance(result, Mapping):
        # Lambda fails the whole batch when the response is not a batch-item-failures object.
        return list(message_ids), f"consumer returned {type(result).__name__}, not a batch response"
    failures = result.get("batchItemFailures") or []
    reported = []
    for failure in failures:
        item = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not item or item not in message_ids:
            # Lambda treats a malformed or unknown identifier as a failure of the whole batch.
            return list(message_ids), f"invalid batchItemFailures entry {failure!r}"
        reported.append(item)
    return [m for m in message_ids if m in set(reported)], None


class QueuePoller:
    """Polls one queue into one consumer until ``stop`` is set."""

    def __init__(
        self,
        sqs: Any,
        source: SQSEventConfig,
        handler: Handler,
        *,
        queue_url: str,
        queue_arn: str,
        region: str,
        function_name: str,
        stop: threading.Event,
        wait_seconds: int = 1,
    ) -> None:
        self._sqs = sqs
        self.source = source
        self._handler = handler
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._region = region
        self._function_name = function_name
        self._stop = stop
        self._wait_seconds = wait_seconds

    def poll_once(self) -> BatchOutcome:
        """Receive one batch, invoke the consumer, delete what succeeded."""
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=max(1, min(self.source.batch_size, 10)),
            WaitTimeSeconds=self._wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        outcome = BatchOutcome(received=[m["MessageId"] for m in messages])
        if not messages:
            return outcome
        event = sqs_event_from_messages(messages, queue_arn=self._queue_arn, region=self._region)
        context = LambdaContext(self._function_name, memory_size=256, max_runtime_ms=60_000)
        try:
            result = self._handler(event, context)
            outcome.failed, outcome.error = failed_ids(result, outcome.received)
        except Exception as exc:  # the consumer crashed: Lambda retries the whole batch
            outcome.failed, outcome.error = list(outcome.received), f"{type(exc).__name__}: {exc}"
        succeeded = [m for m in messages if m["MessageId"] not in set(outcome.failed)]
        if succeeded:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(succeeded)],
            )
        outcome.deleted = [m["MessageId"] for m in succeeded]
        if outcome.failed:
            log(
                f"{self.source.name}: {len(outcome.failed)} of {len(messages)} message(s) failed"
                + (f" ({outcome.error})" if outcome.error else "")
                + "; SQS redelivers them after the visibility timeout"
            )
        return outcome

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # keep polling through transient errors, as Lambda does
                if self._stop.is_set():
                    return
                log(f"{self.source.name}: polling {self.source.queue} failed: {type(exc).__name__}: {exc}")
                self._stop.wait(1.0)
