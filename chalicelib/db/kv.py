"""Short-lived keys with a TTL: cached tokens, refresh locks, replay guards, rate counters.

One table, keyed by a namespaced string (``wecom#access_token``, ``replay#<sha256>``...). DynamoDB
deletes expired items on its own schedule (up to days later), so every read here also checks
``expires_at`` itself.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName


class KeyValueModel(Model):
    class Meta(TableMeta):
        table_name = TableName("kv")

    key = UnicodeAttribute(hash_key=True)
    value = UnicodeAttribute(default="")
    expires_at = NumberAttribute()  # unix seconds; the authority, read by the code
    ttl = TTLAttribute()  # the same moment, for DynamoDB's own clean-up
    hits = NumberAttribute(null=True)  # rate windows (``hit``)


class KeyValueStore:
    """Get, put and claim short-lived keys."""

    def __init__(self, clock=time.time) -> None:
        self._clock = clock

    def get(self, key: str) -> str | None:
        """The live value of ``key`` (strongly consistent), or ``None``."""
        try:
            item = KeyValueModel.get(key, consistent_read=True)
        except DoesNotExist:
            return None
        return item.value if item.expires_at > self._clock() else None

    def put(self, key: str, value: str, ttl_seconds: float) -> None:
        expires = self._clock() + ttl_seconds
        KeyValueModel(key=key, value=value, expires_at=expires, ttl=_moment(expires)).save()

    def claim(self, key: str, ttl_seconds: float, value: str = "") -> bool:
        """Create ``key`` unless a live one exists: ``True`` if this caller got it.

        The basis of replay guards (a payload seen once) and locks (one refresher at a time).
        """
        now = self._clock()
        expires = now + ttl_seconds
        try:
            KeyValueModel(key=key, value=value, expires_at=expires, ttl=_moment(expires)).save(
                condition=KeyValueModel.key.does_not_exist() | (KeyValueModel.expires_at <= now)
            )
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def hit(self, key: str, window_seconds: int, offset_seconds: int = 0) -> int:
        """Count one more use of ``key`` in the current fixed window; returns the count so far.

        Windows start at multiples of ``window_seconds`` in a clock ``offset_seconds`` ahead of UTC
        (``28800`` and a day: days of the campus, from midnight in Asia/Shanghai). One UpdateItem:
        concurrent callers each get a distinct count, so a limit holds under load.
        """
        now = self._clock()
        window = int((now + offset_seconds) // window_seconds)
        expires = (window + 1) * window_seconds - offset_seconds
        item = KeyValueModel(key=f"{key}@{window}")
        item.update(actions=[KeyValueModel.hits.add(1), KeyValueModel.expires_at.set(expires),
                             KeyValueModel.ttl.set(_moment(expires))])
        return int(item.hits or 0)

    def release(self, key: str) -> None:
        KeyValueModel(key=key).delete()


def _moment(unix_seconds: float) -> datetime:
    # DynamoDB's TTL wants whole seconds; round up so the item never vanishes before it expires.
    return datetime.fromtimestamp(math.ceil(unix_seconds), tz=timezone.utc)
