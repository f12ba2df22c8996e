"""Record every AWS API call made in-process (boto3 and PynamoDB alike go through botocore)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import botocore.client


@contextmanager
def recorded_aws_calls() -> Iterator[list[tuple[str, str]]]:
    """Yield a list that fills with ``(service, operation)`` for each call made inside the block."""
    calls: list[tuple[str, str]] = []
    original = botocore.client.BaseClient._make_api_call

    def recording(client, operation_name, api_params):
        calls.append((client.meta.service_model.service_name, operation_name))
        return original(client, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = recording
    try:
        yield calls
    finally:
        botocore.client.BaseClient._make_api_call = original
