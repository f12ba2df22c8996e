"""Record every AWS API call made in-process (boto3 and PynamoDB alike go through botocore)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import botocore.client


@contextmanager
def _hooked(record: Callable[[Any, str, dict[str, Any]], None]) -> Iterator[None]:
    original = botocore.client.BaseClient._make_api_call

    def recording(client, operation_name, api_params):
        record(client, operation_name, api_params)
        return original(client, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = recording
    try:
        yield
    finally:
        botocore.client.BaseClient._make_api_call = original


@contextmanager
def recorded_aws_calls() -> Iterator[list[tuple[str, str]]]:
    """Yield a list that fills with ``(service, operation)`` for each call made inside the block."""
    calls: list[tuple[str, str]] = []
    with _hooked(lambda client, operation, params: calls.append((client.meta.service_model.service_name, operation))):
        yield calls


@contextmanager
def recorded_table_calls() -> Iterator[list[tuple[str, str]]]:
    """Yield a list that fills with ``(operation, table)`` for each DynamoDB table a call inside the
    block touches (batch calls once per table)."""
    calls: list[tuple[str, str]] = []

    def record(client: Any, operation: str, params: dict[str, Any]) -> None:
        tables = [params["TableName"]] if "TableName" in params else list(params.get("RequestItems", {}))
        calls.extend((operation, table) for table in tables)

    with _hooked(record):
        yield calls


# -- the application's calls over the whole integration suite -----------------------------------
# A test that calls PynamoDB or boto3 directly (to look, or to set the scene) is not the
# application: only calls with a frame of app.py or chalicelib/ on the stack are kept. The
# deployment's IAM policy must grant each of them, and none may be a Scan.
APPLICATION_OPERATIONS: set[tuple[str, str]] = set()
_APPLICATION_FILES = ("/chalicelib/", "/app.py")
_recording_application = False


def record_application_calls() -> None:
    """From now on, add each call the application makes to :data:`APPLICATION_OPERATIONS` (once per process)."""
    global _recording_application
    if _recording_application:
        return
    original = botocore.client.BaseClient._make_api_call

    def recording(client: Any, operation_name: str, api_params: Any) -> Any:
        frame = sys._getframe(1)
        while frame is not None:
            filename = frame.f_code.co_filename
            if any(marker in filename for marker in _APPLICATION_FILES) and "/tests/" not in filename:
                APPLICATION_OPERATIONS.add((client.meta.service_model.service_name, operation_name))
                break
            frame = frame.f_back  # type: ignore[assignment]
        return original(client, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = recording  # type: ignore[method-assign]
    _recording_application = True


# The IAM action a call needs, where it is not "<service>:<operation>".
_IAM_ACTION = {("s3", "HeadObject"): "s3:GetObject", ("dynamodb", "TransactGetItems"): "dynamodb:GetItem",
               ("sqs", "SendMessageBatch"): "sqs:SendMessage", ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
               ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility"}
# Calls whose permission is that of the operations inside them.
_NO_ACTION_OF_ITS_OWN = {("dynamodb", "TransactWriteItems")}


def iam_actions(operations: set[tuple[str, str]]) -> set[str]:
    return {_IAM_ACTION.get(op, f"{op[0]}:{op[1]}") for op in operations if op not in _NO_ACTION_OF_ITS_OWN}
