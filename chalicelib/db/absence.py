"""Storage of leave and travel registrations (absences) and the days people are away.

Access patterns and the keys that serve them (no Scan anywhere):

* a person's absences (the overlap check, the health prefill) -> ``absences``, hash ``userid``,
  range ``app_id``; read consistently, so a filing sees the one just before it
* one absence                                   -> the same table by ``(userid, app_id)`` (the
  application names the person)
* absences awaiting a return, by end            -> GSI ``awaiting``: sparse (``awaiting`` is the kind,
  set only while approved and not returned), range ``end``: the overdue job and the overdue part of
  the overviews read what ended
* who is away on a day                          -> ``absence_days``, hash ``day`` (campus date),
  range ``<type>#<department>#<class>#<userid>#<app_id>``: one row per person and day away, so an
  overview of a class, a department or a type is one ``begins_with`` query per day
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone

from pynamodb.attributes import BooleanAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName, save_if
from chalicelib.domain.absence import Absence, Kind


class Awaiting(GlobalSecondaryIndex["AbsenceModel"]):
    class Meta:
        index_name = "awaiting"
        projection = AllProjection()

    awaiting = UnicodeAttribute(hash_key=True)
    end = UnicodeAttribute(range_key=True)


class _AbsenceFields:
    """What a record and its away rows both hold of the absence (the rows are read on their own)."""

    kind = UnicodeAttribute()
    name = UnicodeAttribute()
    person_type = UnicodeAttribute()
    department = UnicodeAttribute()
    class_id = UnicodeAttribute(null=True)
    start = UnicodeAttribute()
    end = UnicodeAttribute()
    province = UnicodeAttribute()
    city = UnicodeAttribute()
    leaves_jinan = BooleanAttribute()
    transport = UnicodeAttribute()
    trip_number = UnicodeAttribute(null=True)


class AbsenceModel(_AbsenceFields, Model):
    class Meta(TableMeta):
        table_name = TableName("absences")

    userid = UnicodeAttribute(hash_key=True)
    app_id = UnicodeAttribute(range_key=True)
    status = UnicodeAttribute()
    app_version = NumberAttribute()
    version = NumberAttribute()
    returned_at = UnicodeAttribute(null=True)
    acknowledged_at = UnicodeAttribute(null=True)
    acknowledged_by = UnicodeAttribute(null=True)
    reminded_at = UnicodeAttribute(null=True)
    rows_first = UnicodeAttribute(null=True)
    rows_last = UnicodeAttribute(null=True)
    awaiting = UnicodeAttribute(null=True)  # the kind, while approved and not returned (GSI key)
    expires_at = TTLAttribute(null=True)
    awaiting_index = Awaiting()


class AwayDayModel(_AbsenceFields, Model):
    class Meta(TableMeta):
        table_name = TableName("absence_days")

    day = UnicodeAttribute(hash_key=True)
    key = UnicodeAttribute(range_key=True)
    app_id = UnicodeAttribute()
    userid = UnicodeAttribute()
    expires_at = TTLAttribute()


MODELS: tuple[type[Model], ...] = (AbsenceModel, AwayDayModel)
_SHARED = ("app_id", "kind", "userid", "name", "person_type", "department", "class_id", "start", "end", "province",
           "city", "leaves_jinan", "transport", "trip_number")


def _absence(model: AbsenceModel) -> Absence:
    return Absence(
        **{name: getattr(model, name) for name in _SHARED}, status=model.status, app_version=int(model.app_version),
        version=int(model.version), returned_at=model.returned_at, acknowledged_at=model.acknowledged_at,
        acknowledged_by=model.acknowledged_by, reminded_at=model.reminded_at,
        rows=(model.rows_first, model.rows_last) if model.rows_first and model.rows_last else None)


def _from_row(model: AwayDayModel) -> Absence:
    # A row carries the absence as it was approved; status and return live on the record.
    return Absence(**{name: getattr(model, name) for name in _SHARED}, status="approved", app_version=0)


class AbsenceRepository:
    """Absences and away rows (see the module docstring for the keys)."""

    def __init__(self, retention_days: int = 400) -> None:
        self.retention_days = retention_days

    def get(self, userid: str, app_id: str) -> Absence | None:
        try:
            return _absence(AbsenceModel.get(userid, app_id, consistent_read=True))
        except DoesNotExist:
            return None

    def of_person(self, userid: str) -> list[Absence]:
        return [_absence(m) for m in AbsenceModel.query(userid, consistent_read=True)]

    def save(self, absence: Absence, expected_version: int) -> bool:
        """Write ``absence`` as version ``expected_version + 1`` if the stored one is still
        ``expected_version`` (0: not stored yet). False when another write came first."""
        model = AbsenceModel(**{name: getattr(absence, name) for name in _SHARED}, status=absence.status,
                             app_version=absence.app_version, version=expected_version + 1,
                             returned_at=absence.returned_at, acknowledged_at=absence.acknowledged_at,
                             acknowledged_by=absence.acknowledged_by, reminded_at=absence.reminded_at,
                             rows_first=absence.rows[0] if absence.rows else None,
                             rows_last=absence.rows[1] if absence.rows else None,
                             awaiting=absence.kind if absence.awaiting_return else None,
                             expires_at=_expiry(absence.end, self.retention_days))
        condition = AbsenceModel.userid.does_not_exist() if expected_version == 0 else \
            AbsenceModel.version == expected_version
        return save_if(model, condition)

    def put_rows(self, absence: Absence, days: Sequence[date], retention_days: int) -> None:
        shared = {name: getattr(absence, name) for name in _SHARED}
        with AwayDayModel.batch_write() as batch:
            for day in days:
                batch.save(AwayDayModel(day.isoformat(), absence.row_key, **shared,
                                        expires_at=_day_expiry(day, retention_days)))

    def delete_rows(self, absence: Absence, days: Sequence[date]) -> None:
        with AwayDayModel.batch_write() as batch:
            for day in days:
                batch.delete(AwayDayModel(day.isoformat(), absence.row_key))

    def rows_on(self, day: date, prefix: str) -> Iterator[Absence]:
        for model in AwayDayModel.query(day.isoformat(), AwayDayModel.key.startswith(prefix)):
            yield _from_row(model)

    def awaiting(self, kind: Kind, ended_by: str) -> Iterator[Absence]:
        """Approved absences of ``kind`` not returned from whose end is at or before ``ended_by``."""
        for model in AbsenceModel.awaiting_index.query(kind, AbsenceModel.end <= ended_by):
            yield _absence(model)


def _expiry(end: str, retention_days: int) -> datetime:
    return datetime.fromisoformat(end).astimezone(timezone.utc) + timedelta(days=retention_days)


def _day_expiry(day: date, retention_days: int) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=retention_days + 1)
