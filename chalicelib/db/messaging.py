"""The outbox of WeCom messages, per-recipient delivery rows, and per-member send counters.

* a notification part by key                   -> ``outbox`` hash ``part_key`` (``<key>#p<n>``)
* a person's messages on a day (admin listing)  -> ``deliveries`` hash ``userid``, range
                                                   ``<campus date>#<time>#<part key>``
* how many messages a member got this hour and minute -> ``member_rates`` hash ``<userid>#<UTC hour>``
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pynamodb.attributes import (
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName

DELIVERY_RETENTION = timedelta(days=180)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class OutboxModel(Model):
    class Meta(TableMeta):
        table_name = TableName("outbox")

    part_key = UnicodeAttribute(hash_key=True)
    key = UnicodeAttribute()
    status = UnicodeAttribute(default="queued")  # queued | deferred | sent | invalid_user | failed
    kind = UnicodeAttribute()
    title = UnicodeAttribute(default="")
    recipient_count = NumberAttribute()
    sent_to = UnicodeSetAttribute(default=set)
    invalid_users = UnicodeSetAttribute(default=set)
    msgids = ListAttribute(of=UnicodeAttribute, default=list)
    attempts = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute(default=_now)
    updated_at = UTCDateTimeAttribute(default=_now)
    ttl = TTLAttribute(null=True)


class DeliveryModel(Model):
    class Meta(TableMeta):
        table_name = TableName("deliveries")

    userid = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)  # <YYYY-MM-DD campus>#<UTC ISO>#<part key>
    part_key = UnicodeAttribute()
    title = UnicodeAttribute(default="")
    status = UnicodeAttribute()
    msgid = UnicodeAttribute(null=True)
    ttl = TTLAttribute()


class MemberRateModel(Model):
    class Meta(TableMeta):
        table_name = TableName("member_rates")

    bucket = UnicodeAttribute(hash_key=True)  # <userid>#<YYYYMMDDHH UTC>
    total = NumberAttribute(default=0)  # messages this hour
    minute = UnicodeAttribute(default="")  # the minute ``minute_count`` counts (``m17``)
    minute_count = NumberAttribute(default=0)
    ttl = TTLAttribute()


@dataclass(frozen=True)
class DeliveryRecord:
    message: str  # the notification key
    title: str
    status: str
    msgid: str | None


class OutboxRepository:
    def open_part(self, part_key: str, *, key: str, kind: str, title: str, recipients: int) -> OutboxModel:
        """The outbox row of a part, created (status ``queued``) on first sight."""
        try:
            return OutboxModel.get(part_key, consistent_read=True)
        except DoesNotExist:
            row = OutboxModel(part_key=part_key, key=key, kind=kind, title=title, recipient_count=recipients,
                              ttl=_now() + DELIVERY_RETENTION)
            try:
                row.save(condition=OutboxModel.part_key.does_not_exist())
            except PutError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
                return OutboxModel.get(part_key, consistent_read=True)
            return row

    def record_attempt(
        self, row: OutboxModel, *, status: str, sent: Iterable[str] = (), invalid: Iterable[str] = (),
        msgid: str | None = None,
    ) -> None:
        actions = [OutboxModel.status.set(status), OutboxModel.attempts.add(1), OutboxModel.updated_at.set(_now())]
        sent, invalid = set(sent), set(invalid)
        if sent:
            actions.append(OutboxModel.sent_to.add(sent))
        if invalid:
            actions.append(OutboxModel.invalid_users.add(invalid))
        if msgid:
            actions.append(OutboxModel.msgids.set(OutboxModel.msgids.append([msgid])))
        row.update(actions=actions)

    def record_deliveries(self, part_key: str, title: str, statuses: dict[str, str], msgid: str | None,
                          campus_date: str) -> None:
        """One row per recipient (``{userid: status}``), replacing earlier ones for this part."""
        at = _now()
        with DeliveryModel.batch_write() as batch:
            for userid, status in statuses.items():
                batch.save(DeliveryModel(userid=userid, sort_key=f"{campus_date}#{part_key}", part_key=part_key,
                                         title=title, status=status, msgid=msgid, ttl=at + DELIVERY_RETENTION))

    def deliveries(self, userid: str, campus_date: str, limit: int = 200) -> list[DeliveryRecord]:
        """A person's messages of one campus day (at most ``limit``), as plain records."""
        rows = DeliveryModel.query(userid, DeliveryModel.sort_key.startswith(f"{campus_date}#"), limit=limit)
        return [DeliveryRecord(message=r.part_key.rsplit("#p", 1)[0], title=r.title, status=r.status, msgid=r.msgid)
                for r in rows]

    def get(self, part_key: str) -> OutboxModel | None:
        try:
            return OutboxModel.get(part_key, consistent_read=True)
        except DoesNotExist:
            return None


class MemberRates:
    """Per-member send counters, so no member passes WeCom's limits (30 a minute, 1000 an hour).

    WeCom counts over sliding windows; the counters here are per calendar minute and hour. Any
    60-second window overlaps at most two calendar minutes (any hour window two calendar hours),
    so each calendar bucket gets half the limit: the sliding limit then holds whatever the timing.
    Every reservation is one conditional UpdateItem (ADD creates the counter), exact under any
    number of concurrent consumers.
    """

    def __init__(self, per_minute: int, per_hour: int, threads: int = 16) -> None:
        self._per_minute = max(1, per_minute // 2)
        self._per_hour = max(1, per_hour // 2)
        self._threads = threads

    def reserve(self, userids: Sequence[str], hour: str, minute: str) -> tuple[list[str], list[str]]:
        """(allowed, deferred), each in the order given, for one send to ``userids`` (distinct)."""
        if not userids:
            return [], []
        expires = _now() + timedelta(hours=3)
        with ThreadPoolExecutor(max_workers=min(self._threads, len(userids))) as pool:
            granted = list(pool.map(lambda u: self._take(f"{u}#{hour}", minute, expires), userids))
        return ([u for u, ok in zip(userids, granted) if ok], [u for u, ok in zip(userids, granted) if not ok])

    def _take(self, bucket: str, minute: str, expires: datetime) -> bool:
        """One exact, conditional increment; ``False`` when a limit is reached."""
        under_hour = MemberRateModel.total.does_not_exist() | (MemberRateModel.total < self._per_hour)
        attempts = (
            # first message of this minute (or of this hour: ADD creates the item); the usual case
            ([MemberRateModel.total.add(1), MemberRateModel.minute.set(minute), MemberRateModel.minute_count.set(1),
              MemberRateModel.ttl.set(expires)],
             under_hour & (MemberRateModel.minute.does_not_exist() | (MemberRateModel.minute != minute))),
            # the counter already counts this minute
            ([MemberRateModel.total.add(1), MemberRateModel.minute_count.add(1), MemberRateModel.ttl.set(expires)],
             under_hour & (MemberRateModel.minute == minute) & (MemberRateModel.minute_count < self._per_minute)),
        )
        for actions, condition in attempts:
            try:
                MemberRateModel(bucket=bucket).update(actions=actions, condition=condition)
                return True
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
        return False
