"""Record every AWS API call made in-process (boto3 and PynamoDB alike go through botocore)."""

from __future__ import annotations

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
