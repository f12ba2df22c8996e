"""The resource catalogue's stored versions and the visit counters.

``resources``: every version the IT centre stored, in one partition (``catalogue`` = ``resources``,
range ``<id>#<version>``): the catalogue is a few hundred items at most, so listing it is one Query.
``resource_visits``: one item per campus day, resource and person type (hash ``day``, range
``<resource id>#<person type>``) whose ``visits`` is added to atomically, so concurrent openings are
all counted; a period's figures are one Query a day. Counters expire by TTL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.expressions.operand import Path, Value
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName, save_if
from chalicelib.domain.resources import Resource, VisitCount
from chalicelib.errors import Conflict

CATALOGUE = "resources"


class ResourceModel(Model):
    class Meta(TableMeta):
        table_name = TableName("resources")

    catalogue = UnicodeAttribute(hash_key=True)
    key = UnicodeAttribute(range_key=True)  # <resource id>#<version, zero-padded>
    resource_id = UnicodeAttribute()
    version = NumberAttribute()
    definition = UnicodeAttribute()  # the Resource as JSON
    changed_by = UnicodeAttribute()
    changed_at = UnicodeAttribute()


class VisitCountModel(Model):
    class Meta(TableMeta):
        table_name = TableName("resource_visits")

    day = UnicodeAttribute(hash_key=True)
    key = UnicodeAttribute(range_key=True)  # <resource id>#<person type>
    visits = NumberAttribute(default=0)
    expires_at = TTLAttribute(null=True)


MODELS: tuple[type[Model], ...] = (ResourceModel, VisitCountModel)


def _key(resource_id: str, version: int) -> str:
    return f"{resource_id}#{version:06d}"


class ResourceRepository:
    def all_latest(self) -> dict[str, Resource]:
        latest: dict[str, Resource] = {}
        for row in ResourceModel.query(CATALOGUE, consistent_read=True):
            # Rows come in key order: a resource's versions ascending, so the last one read wins.
            latest[row.resource_id] = Resource.model_validate_json(row.definition)
        return latest

    def latest(self, resource_id: str) -> Resource | None:
        for row in ResourceModel.query(CATALOGUE, ResourceModel.key.startswith(f"{resource_id}#"),
                                       scan_index_forward=False, limit=1, consistent_read=True):
            return Resource.model_validate_json(row.definition)
        return None

    def add(self, resource: Resource, changed_by: str, now: datetime) -> None:
        """Store a new version.

        Raises:
            Conflict: that version exists already (another change came first).
        """
        row = ResourceModel(CATALOGUE, _key(resource.id, resource.version), resource_id=resource.id,
                            version=resource.version, definition=resource.model_dump_json(), changed_by=changed_by,
                            changed_at=now.isoformat(timespec="seconds"))
        if not save_if(row, ResourceModel.key.does_not_exist()):
            raise Conflict("The resource was changed meanwhile; reload it and try again.")


class VisitCounterRepository:
    def add(self, day: date, resource_id: str, person_type: str, retention_days: int) -> None:
        expires = datetime.combine(day + timedelta(days=retention_days), time(), tzinfo=timezone.utc)
        VisitCountModel._get_connection().update_item(
            day.isoformat(), f"{resource_id}#{person_type}",
            actions=[Path("visits").add(Value(1, attribute=NumberAttribute())), VisitCountModel.expires_at.set(expires)],
            return_values="NONE")

    def of_day(self, day: date) -> Iterator[VisitCount]:
        for row in VisitCountModel.query(day.isoformat()):
            resource_id, _, person_type = row.key.rpartition("#")
            yield VisitCount(row.day, resource_id, person_type, int(row.visits))
