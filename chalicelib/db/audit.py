"""The audit trail: who changed or read what about whom, kept without the values themselves.

* events about a subject, newest first -> hash ``subject`` (``person#<userid>``), range ``event_id``
* events by an actor, newest first      -> GSI ``by_actor``
* events of a campus day, newest first  -> GSI ``by_day`` (what the IT centre reviews)
"""

from __future__ import annotations

import json
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

        ``after`` is the position returned with the previous page (an opaque JSON key).
        """
        try:
            start = json.loads(after) if after else None
            allowed = {"subject", "event_id", "actor", "day"}
            if start is not None and not (isinstance(start, dict) and set(start) <= allowed and all(
                    isinstance(v, dict) and list(v) == ["S"] and isinstance(v["S"], str) for v in start.values())):
                raise ValueError("not a key")
        except ValueError:
            raise Invalid("The cursor is not one we handed out.", {"next": "unknown cursor"}) from None
        if subject is not None:
            rows = AuditModel.query(subject, scan_index_forward=False, limit=limit, last_evaluated_key=start)
        elif actor is not None:
            rows = AuditModel.by_actor.query(actor, scan_index_forward=False, limit=limit, last_evaluated_key=start)
        else:
            rows = AuditModel.by_day.query(day, scan_index_forward=False, limit=limit, last_evaluated_key=start)
        events = [_event(m) for m in rows]
        following = rows.last_evaluated_key
        return events, json.dumps(following, sort_keys=True) if following and len(events) == limit else None


def _event(model: AuditModel) -> AuditEvent:
    return AuditEvent(
        subject=model.subject,
        at=model.event_id.split("#", 1)[0],
        actor=model.actor,
        action=model.action,
        detail=json.loads(model.detail),
    )
