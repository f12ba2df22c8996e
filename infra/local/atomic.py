"""Per-item atomicity for moto's DynamoDB, as DynamoDB itself guarantees.

moto evaluates a condition expression and then writes, with nothing in between to stop another
thread: two conditional writes racing on the same item can both succeed, which real DynamoDB never
allows. Optimistic locking (one approval wins, one booking per slot) is only testable with the
real guarantee, so the local stack and the tests serialise moto's write operations behind one
lock. Reads stay unlocked.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


def make_dynamodb_writes_atomic() -> None:
    """Patch moto's DynamoDB backend once per process (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "_atomic", False):
            continue

        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with _LOCK:
                return __original(self, *args, **kwargs)

        functools.update_wrapper(locked, original)
        locked._atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, locked)
