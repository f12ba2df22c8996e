"""The audit trail: who changed or read what about whom, kept without the values themselves.

* events about a subject, newest first -> hash ``subject`` (``person#<userid>``), range ``event_id``
* events by an actor, newest first      -> GSI ``by_actor``
* events of a campus day, newest first  -> GSI ``by_day`` (what the IT centre reviews)
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName
from chalicelib.errors import Invalid
from chalicelib.settings import get_settings


class ByActor(GlobalSecondaryIndex["AuditModel"]):
    class Meta:
        index_name = "by_actor"
        projection = AllProjection()

    actor = UnicodeAttribute(hash_key=True)
    event_id = UnicodeAttribute(range_key=True)


class ByDay(GlobalSecondaryIndex["AuditModel"]):
    class Meta:
        index_name = "by_day"
        projection = AllProjection()

    day = UnicodeAttribute(hash_key=True)
    event_id = UnicodeAttribute(range_key=True)


class AuditModel(Model):
    class Meta(TableMeta):
        table_name = TableName("audit")

    subject = UnicodeAttribute(hash_key=True)
    event_id = UnicodeAttribute(range_key=True)  # <UTC ISO time>#<random>: sorts by time
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    detail = UnicodeAttribute(default="{}")  # JSON: field names and non-sensitive values only
    day = UnicodeAttribute(null=True)  # campus calendar day of the event

    by_actor = ByActor()
    by_day = ByDay()


@dataclass(frozen=True)
class AuditEvent:
    subject: str
    at: str
    actor: str
    action: str
    detail: dict[str, Any]


def audit_item(*, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> AuditModel:
    """A new audit record (not yet written), stamped now."""
    now = datetime.now(timezone.utc)
    at = now.isoformat(timespec="milliseconds")
    return AuditModel(
        day=now.astimezone(get_settings().tz).date().isoformat(),
        subject=subject,
        event_id=f"{at}#{uuid.uuid4().hex[:12]}",
        actor=actor,
        action=action,
        detail=json.dumps(detail or {}, ensure_ascii=False, sort_keys=True),
    )


class AuditRepository:
    def record(self, *, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
        audit_item(subject=subject, actor=actor, action=action, detail=detail).save()

    def record_many(self, actor: str, entries: Sequence[Any]) -> None:
        """Write many entries (objects with ``subject``, ``action``, ``detail``) in batches of 25."""
        with AuditModel.batch_write() as batch:
            for entry in entries:
                batch.save(audit_item(subject=entry.subject, actor=actor, action=entry.action, detail=entry.detail))

    def for_subject(self, subject: str, limit: int = 50) -> list[AuditEvent]:
        return [_event(m) for m in AuditModel.query(subject, scan_index_forward=False, limit=limit)]

    def by_actor(self, actor: str, limit: int = 50) -> list[AuditEvent]:
        return [_event(m) for m in AuditModel.by_actor.query(actor, scan_index_forward=False, limit=limit)]

    def page(self, *, subject: str | None = None, actor: str | None = None, day: str | None = None, limit: int = 50,
             after: str | None = None) -> tuple[list[AuditEvent], str | None]:
        """One page of events, newest first: of a subject, else of an actor, else of a campus day.

        ``after`` is the position returned with the previous page (``<event id> <subject>``); the
        start key is rebuilt from it and the current filter, so a position from another filter or
        a forged one only moves the start, never breaks the query.

        Raises:
            Invalid: ``after`` is not a position this method returns.
        """
        start = None
        if after is not None:
            event_id, _, after_subject = after.partition(" ")
            if not _EVENT_ID.fullmatch(event_id) or not after_subject or len(after_subject) > 200:
                raise Invalid("The cursor is not one we handed out.", {"next": "unknown cursor"})
            start = {"subject": {"S": after_subject}, "event_id": {"S": event_id}}
        if subject is not None:
            rows = AuditModel.query(subject, scan_index_forward=False, limit=limit,
                                    last_evaluated_key=start and {**start, "subject": {"S": subject}})
        elif actor is not None:
            rows = AuditModel.by_actor.query(actor, scan_index_forward=False, limit=limit,
                                             last_evaluated_key=start and {**start, "actor": {"S": actor}})
        else:
            rows = AuditModel.by_day.query(day, scan_index_forward=False, limit=limit,
                                           last_evaluated_key=start and {**start, "day": {"S": day}})
        models = list(rows)
        following = rows.last_evaluated_key
        position = f"{models[-1].event_id} {models[-1].subject}" if following and len(models) == limit else None
        return [_event(m) for m in models], position


_EVENT_ID = re.compile(r"\d{4}-\d{2}-\d{2}T[\d:.]+\+00:00#[0-9a-f]{12}")


def _event(model: AuditModel) -> AuditEvent:
    return AuditEvent(
        subject=model.subject,
        at=model.event_id.split("#", 1)[0],
        actor=model.actor,
        action=model.action,
        detail=json.loads(model.detail),
    )
