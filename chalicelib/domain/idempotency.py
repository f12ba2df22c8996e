"""Submissions that a retry must not repeat: one record per (caller, Idempotency-Key).

Used where a client creates something with a POST (an application, a notice) and may resend after a
lost response. The key is claimed briefly while the record is made (a concurrent duplicate gets a
conflict), kept for a day once the record is stored (a retry gets the record back), and released if
nothing was stored (a corrected retry may reuse it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from chalicelib.errors import Conflict

T = TypeVar("T")
CLAIM_SECONDS = 60  # a submission in progress: a crashed one frees its key after this
REPLAY_SECONDS = 24 * 3600


class Claims(Protocol):
    def claim(self, key: str, ttl_seconds: float, value: str = "") -> bool: ...
    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str, ttl_seconds: float) -> None: ...
    def release(self, key: str) -> None: ...


def create_once(claims: Claims, key: str, new_id: str, create: Callable[[str], T],
                find: Callable[[str], T | None], busy: str) -> tuple[T, bool]:
    """``create(new_id)`` unless this key made a record already; returns it and whether it was a replay.

    Raises:
        Conflict: the first submission with this key is still in progress (``busy`` says so).
    """
    if not claims.claim(key, CLAIM_SECONDS, value=new_id):
        earlier = claims.get(key)
        found = find(earlier) if earlier else None
        if found is None:
            raise Conflict(busy)
        return found, True
    try:
        made = create(new_id)
    except Exception:
        claims.release(key)  # nothing was stored: a corrected retry may use the key again
        raise
    claims.put(key, new_id, REPLAY_SECONDS)
    return made, False
