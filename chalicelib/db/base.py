"""Shared PynamoDB plumbing: table names resolved from settings at call time.

``Meta.table_name`` is read by PynamoDB on every operation. Making it a descriptor that asks
:func:`chalicelib.settings.get_settings` means the stage's prefix is applied when a table is used,
never when the module is imported (when, under ``chalice.test.Client``, the stage's variables are
not yet in the environment).
"""

from __future__ import annotations

import functools
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.models import Model

from chalicelib.settings import get_settings


class TableMeta:
    """Base of every model's ``Meta``: timeouts that fit inside API Gateway's 29 s limit.

    PynamoDB's defaults (15 s connect, 30 s read, 3 retries) would let one slow call outlive the
    request that made it.
    """

    connect_timeout_seconds = 2
    read_timeout_seconds = 5
    # botocore's retries, with its backoff, for throttling and transient errors.
    max_retry_attempts = 3


@functools.cache
def transaction_connection() -> Connection:
    """The one connection transactions use (built on first use; models keep their own)."""
    return Connection(
        connect_timeout_seconds=TableMeta.connect_timeout_seconds,
        read_timeout_seconds=TableMeta.read_timeout_seconds,
        max_retry_attempts=TableMeta.max_retry_attempts,
    )


class TableName:
    """Descriptor for ``Meta.table_name``: ``<TABLE_PREFIX><logical name>`` from the settings."""

    def __init__(self, logical_name: str) -> None:
        self.logical_name = logical_name

    def __get__(self, instance: Any, owner: Any) -> str:
        return get_settings().table_name(self.logical_name)


def logical_name(model: type[Model]) -> str:
    """The logical table name of a model (``people``), independent of stage."""
    descriptor = vars(model.Meta).get("table_name")
    if not isinstance(descriptor, TableName):
        raise TypeError(f"{model.__name__}.Meta.table_name must be a TableName")
    return descriptor.logical_name


def conditional_failed(exc: PutError | UpdateError) -> bool:
    """The write was refused because its condition did not hold (not an outage)."""
    return exc.cause_response_code == "ConditionalCheckFailedException"


def save_if(item: Model, condition: Any) -> bool:
    """Put ``item`` if ``condition`` holds; ``False`` (nothing written) if it does not."""
    try:
        item.save(condition=condition)
    except PutError as exc:
        if conditional_failed(exc):
            return False
        raise
    return True
