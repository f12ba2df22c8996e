"""The audit trail: who changed or read what about whom, kept without the values themselves.

* events about a subject, newest first -> hash ``subject`` (``person#<userid>``), range ``event_id``
* events by an actor, newest first      -> GSI ``by_actor``
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


class ByActor(GlobalSecondaryIndex["AuditModel"]):
    class Meta:
        index_name = "by_actor"
        projection = AllProjection()

    actor = UnicodeAttribute(hash_key=True)
    event_id = UnicodeAttribute(range_key=True)


class AuditModel(Model):
    class Meta(TableMeta):
        table_name = TableName("audit")

    subject = UnicodeAttribute(hash_key=True)
    event_id = UnicodeAttribute(range_key=True)  # <UTC ISO time>#<random>: sorts by time
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    detail = UnicodeAttribute(default="{}")  # JSON: field names and non-sensitive values only

    by_actor = ByActor()


@dataclass(frozen=True)
class AuditEvent:
    subject: str
    at: str
    actor: str
    action: str
    detail: dict[str, Any]


def audit_item(*, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> AuditModel:
    """A new audit record (not yet written), stamped now."""
    at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return AuditModel(
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


def _event(model: AuditModel) -> AuditEvent:
    return AuditEvent(
        subject=model.subject,
        at=model.event_id.split("#", 1)[0],
        actor=model.actor,
        action=model.action,
        detail=json.loads(model.detail),
    )
