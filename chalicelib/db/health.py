"""Storage of daily health reports, the day counters and health cases.

Access patterns and the keys that serve them (no Scan anywhere):

* one person's report of a day (the natural key) -> ``health_reports``, hash ``userid``, range ``day``
* my reports of a period                         -> the same, range between two days
* the reports of a unit on a day (exports)       -> GSI ``by_unit_day`` (``<day>#<unit key>``)
* the abnormal reports of a day                  -> GSI ``by_abnormal_day``: sparse, abnormal ones only
* abnormal reports whose alert is not queued yet -> GSI ``by_pending_alert``: sparse, swept by a job
* the counters of a day, per unit                -> ``health_days``, hash ``day``, range unit key
* a case                                         -> ``health_cases``, hash ``case_id``
* open (or closed) cases, oldest first           -> GSI ``by_state``
* the open case of a person                      -> a pointer in the ``kv`` table (one per person)

Counters are idempotent and ordered: a unit's row holds the people counted (``reporters``,
``abnormal_ids``) and, per person, the report version counted; every change is conditional on that
version. A retried filing never counts anyone twice, a late count of a superseded version changes
nothing, and the evening reconciliation (``HealthStats.reconcile``) repairs a count lost to a
crash between a report and its count. A dashboard reads one partition per day.

Reports expire through DynamoDB's TTL (``expires_at``) after the retention period; TTL deletes
lazily (up to days later), so readers also drop expired items themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.operand import Path, Value
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from chalicelib.db.base import TableMeta, TableName, conditional_failed, save_if
from chalicelib.domain.health import DayFigures, StoredCase, StoredReport, Unit
from chalicelib.errors import Conflict

ROSTER_ROW = "~roster"  # the day row saying expected counts were taken (sorts after every unit)
SEEN = "v#"  # prefix of the per-person attributes of a day row: the version counted


# -- reports ------------------------------------------------------------------------------------
# What lists and exports read of a report: not its history of earlier versions.
_LISTED = ["version", "sealed", "abnormal", "filed_at", "updated_at", "expires_at", "department", "class_id",
           "person_type", "alert_pending"]


class ByUnitDay(GlobalSecondaryIndex["HealthReportModel"]):
    class Meta:
        index_name = "by_unit_day"
        projection = IncludeProjection(_LISTED)

    unit_day = UnicodeAttribute(hash_key=True)
    userid = UnicodeAttribute(range_key=True)


class ByAbnormalDay(GlobalSecondaryIndex["HealthReportModel"]):
    class Meta:
        index_name = "by_abnormal_day"
        projection = IncludeProjection(_LISTED)

    abnormal_day = UnicodeAttribute(hash_key=True)
    userid = UnicodeAttribute(range_key=True)


class ByPendingAlert(GlobalSecondaryIndex["HealthReportModel"]):
    class Meta:
        index_name = "by_pending_alert"
        projection = IncludeProjection(["version"])

    alert_pending = UnicodeAttribute(hash_key=True)
    updated_at = UnicodeAttribute(range_key=True)


class HealthReportModel(Model):
    class Meta(TableMeta):
        table_name = TableName("health_reports")

    userid = UnicodeAttribute(hash_key=True)
    day = UnicodeAttribute(range_key=True)  # campus calendar day, YYYY-MM-DD
    version = NumberAttribute()
    sealed = UnicodeAttribute()  # answers and reasons, AES-GCM (chalicelib.domain.protection)
    abnormal = BooleanAttribute()
    history = ListAttribute(of=UnicodeAttribute, default=list)  # earlier versions, sealed
    filed_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    expires_at = TTLAttribute()
    department = UnicodeAttribute()
    class_id = UnicodeAttribute(null=True)
    person_type = UnicodeAttribute()
    unit_day = UnicodeAttribute()
    abnormal_day = UnicodeAttribute(null=True)
    alert_pending = UnicodeAttribute(null=True)

    by_unit_day = ByUnitDay()
    by_abnormal_day = ByAbnormalDay()
    by_pending_alert = ByPendingAlert()


def _report_model(report: StoredReport) -> HealthReportModel:
    return HealthReportModel(
        userid=report.userid, day=report.day, version=report.version, sealed=report.sealed,
        abnormal=report.abnormal, history=list(report.history), filed_at=report.filed_at,
        updated_at=report.updated_at, expires_at=report.expires_at, department=report.unit.department,
        class_id=report.unit.class_id, person_type=report.unit.person_type,
        unit_day=f"{report.day}#{report.unit.key}", abnormal_day=report.day if report.abnormal else None,
        alert_pending="pending" if report.alert_pending else None,
    )


def _report(model: HealthReportModel) -> StoredReport:
    return StoredReport(
        userid=model.userid, day=model.day, version=int(model.version), sealed=model.sealed,
        abnormal=bool(model.abnormal), filed_at=model.filed_at, updated_at=model.updated_at,
        expires_at=model.expires_at, unit=Unit(model.department, model.class_id, model.person_type),
        history=tuple(model.history or ()), alert_pending=model.alert_pending is not None,
    )


# -- day counters -------------------------------------------------------------------------------
class HealthDayModel(Model):
    class Meta(TableMeta):
        table_name = TableName("health_days")

    day = UnicodeAttribute(hash_key=True)
    unit = UnicodeAttribute(range_key=True)  # Unit.key, or ROSTER_ROW
    expected = NumberAttribute(null=True)
    reported = NumberAttribute(default=0)
    abnormal = NumberAttribute(default=0)
    reporters = UnicodeSetAttribute(default=set)
    abnormal_ids = UnicodeSetAttribute(default=set)
    taken_at = UnicodeAttribute(null=True)  # on ROSTER_ROW: when expected counts were taken
    expires_at = TTLAttribute(null=True)  # with the day's reports
    # and one attribute per person counted: ``v#<userid>`` = the report version counted


# -- cases --------------------------------------------------------------------------------------
class ByState(GlobalSecondaryIndex["HealthCaseModel"]):
    class Meta:
        index_name = "by_state"
        projection = AllProjection()

    state = UnicodeAttribute(hash_key=True)
    opened_at = UnicodeAttribute(range_key=True)


class HealthCaseModel(Model):
    class Meta(TableMeta):
        table_name = TableName("health_cases")

    case_id = UnicodeAttribute(hash_key=True)
    userid = UnicodeAttribute()
    person_type = UnicodeAttribute()
    department = UnicodeAttribute()
    class_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute()  # reported | observing | isolated | referred | cleared
    state = UnicodeAttribute()  # open | closed
    opened_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    reports = ListAttribute(of=UnicodeAttribute, default=list)  # "<day>#v<version>" handled
    sealed_reports = ListAttribute(of=UnicodeAttribute, default=list)  # reasons of each, sealed
    events = ListAttribute(of=UnicodeAttribute, default=list)  # sealed JSON: at, actor, status, note
    version = NumberAttribute(default=1)
    expires_at = TTLAttribute()  # the retention of its latest report

    by_state = ByState()


def _case_model(case: StoredCase) -> HealthCaseModel:
    return HealthCaseModel(
        case_id=case.case_id, userid=case.userid, person_type=case.unit.person_type,
        department=case.unit.department, class_id=case.unit.class_id, status=case.status,
        state="open" if case.is_open else "closed", opened_at=case.opened_at, updated_at=case.updated_at,
        reports=list(case.reports), sealed_reports=list(case.sealed_reports), events=list(case.events),
        version=case.version, expires_at=case.expires_at,
    )


def _case(model: HealthCaseModel) -> StoredCase:
    return StoredCase(
        case_id=model.case_id, userid=model.userid,
        unit=Unit(model.department, model.class_id, model.person_type), status=model.status,
        opened_at=model.opened_at, updated_at=model.updated_at, reports=tuple(model.reports or ()),
        sealed_reports=tuple(model.sealed_reports or ()), events=tuple(model.events or ()),
        version=int(model.version), expires_at=model.expires_at,
    )


class HealthRepository:
    """Reads and writes of reports, counters and cases, in domain terms."""

    # -- reports --------------------------------------------------------------------------------
    def create_report(self, report: StoredReport) -> bool:
        """Store the first report of a person's day; ``False`` if one exists (nothing written)."""
        return save_if(_report_model(report), HealthReportModel.userid.does_not_exist())

    def replace_report(self, report: StoredReport, expected_version: int) -> bool:
        """Store a new version over ``expected_version``; ``False`` if it changed meanwhile."""
        return save_if(_report_model(report), HealthReportModel.version == expected_version)

    def get_report(self, userid: str, day: str, *, consistent: bool = False) -> StoredReport | None:
        try:
            return _report(HealthReportModel.get(userid, day, consistent_read=consistent))
        except DoesNotExist:
            return None

    def reports_of(self, userid: str, first: str, last: str) -> list[StoredReport]:
        """A person's reports from ``first`` to ``last`` (days, inclusive), newest first."""
        return [_report(m) for m in HealthReportModel.query(
            userid, HealthReportModel.day.between(first, last), scan_index_forward=False)]

    def reports_of_unit(self, day: str, unit: Unit) -> Iterator[StoredReport]:
        return (_report(m) for m in HealthReportModel.by_unit_day.query(f"{day}#{unit.key}"))

    def abnormal_reports(self, day: str) -> Iterator[StoredReport]:
        return (_report(m) for m in HealthReportModel.by_abnormal_day.query(day))

    def alert_queued(self, userid: str, day: str, version: int) -> None:
        """Mark the alert of ``version`` as queued (a newer version keeps its own flag)."""
        try:
            HealthReportModel(userid, day).update(actions=[HealthReportModel.alert_pending.remove()],
                                                  condition=HealthReportModel.version == version)
        except UpdateError as exc:
            if not conditional_failed(exc):
                raise

    def pending_alerts(self, older_than: str) -> list[tuple[str, str, int]]:
        """``(userid, day, version)`` of abnormal reports whose alert was not marked queued."""
        return [(m.userid, m.day, int(m.version)) for m in HealthReportModel.by_pending_alert.query(
            "pending", HealthReportModel.updated_at < older_than)]

    # -- counters -------------------------------------------------------------------------------
    def count(self, day: str, unit: Unit, userid: str, abnormal: bool, version: int, expires_at: datetime) -> None:
        """Make the day's counters hold ``userid`` as reported in ``version`` (abnormal or not).

        The unit's row keeps, per person, the version last counted (attribute ``v#<userid>``), and
        every change is conditional on it: a repeat changes nothing, and a late count of an older
        version (a slow request losing a race with a correction) is ignored. The first count of a
        person is one UpdateItem; a change of their abnormal state reads the row first.

        Raises:
            Conflict: the row kept changing under this person (retried by the caller's client).
        """
        row = HealthDayModel(day, unit.key)
        seen = Path([f"{SEEN}{userid}"])
        first = [seen.set(_number(version)), HealthDayModel.reporters.add({userid}), HealthDayModel.reported.add(1),
                 HealthDayModel.expires_at.set(expires_at)]
        if abnormal:
            first += [HealthDayModel.abnormal_ids.add({userid}), HealthDayModel.abnormal.add(1)]
        if _update_if(row, first, seen.does_not_exist()):
            return
        for _ in range(5):
            counted, was_abnormal = self._counted(day, unit, userid)
            if counted is None:  # the row expired under us: start again
                if _update_if(row, first, seen.does_not_exist()):
                    return
                continue
            if counted >= version:
                return
            actions = [seen.set(_number(version))]
            if abnormal and not was_abnormal:
                actions += [HealthDayModel.abnormal_ids.add({userid}), HealthDayModel.abnormal.add(1)]
            elif was_abnormal and not abnormal:
                actions += [HealthDayModel.abnormal_ids.delete({userid}), HealthDayModel.abnormal.add(-1)]
            if _update_if(row, actions, seen == _number(counted)):
                return
        raise Conflict("Today's counters are busy; try again.")

    def _counted(self, day: str, unit: Unit, userid: str) -> tuple[int | None, bool]:
        """(version counted, counted as abnormal) of a person in a unit's row, read consistently."""
        # The whole row: a projection would have to name the attribute, and a userid may hold a dot.
        item = HealthDayModel._get_connection().get_item(day, unit.key, consistent_read=True).get("Item", {})
        counted = item.get(f"{SEEN}{userid}", {}).get("N")
        return (int(counted) if counted is not None else None,
                userid in item.get("abnormal_ids", {}).get("SS", ()))

    def counted_people(self, day: str) -> dict[Unit, dict[str, tuple[int, bool]]]:
        """Per unit, ``{userid: (version counted, abnormal)}`` of a day (the reconciliation job's view)."""
        result: dict[Unit, dict[str, tuple[int, bool]]] = {}
        connection = HealthDayModel._get_connection()
        start = None
        while True:
            page = connection.query(day, consistent_read=True, exclusive_start_key=start)
            for item in page.get("Items", []):
                if item["unit"]["S"] == ROSTER_ROW:
                    continue
                flagged = set(item.get("abnormal_ids", {}).get("SS", ()))
                result[Unit.parse(item["unit"]["S"])] = {
                    name[len(SEEN):]: (int(value["N"]), name[len(SEEN):] in flagged)
                    for name, value in item.items() if name.startswith(SEEN)}
            start = page.get("LastEvaluatedKey")
            if not start:
                return result

    def day_units(self, day: str) -> tuple[dict[Unit, DayFigures], bool]:
        """The counters of ``day``: figures per unit, and whether expected counts were taken."""
        figures: dict[Unit, DayFigures] = {}
        taken = False
        for row in HealthDayModel.query(day, attributes_to_get=["unit", "expected", "reported", "abnormal"]):
            if row.unit == ROSTER_ROW:
                taken = True
                continue
            figures[Unit.parse(row.unit)] = DayFigures(int(row.expected or 0), int(row.reported or 0),
                                                       int(row.abnormal or 0))
        return figures, taken

    def reporters(self, day: str, units: Sequence[Unit]) -> set[str]:
        """Everyone counted as reported on ``day`` in ``units`` (BatchGetItem of their rows)."""
        keys = [(day, unit.key) for unit in units]
        found: set[str] = set()
        for row in HealthDayModel.batch_get(keys, attributes_to_get=["day", "unit", "reporters"]):
            found.update(row.reporters or ())
        return found

    def set_expected(self, day: str, expected: dict[Unit, int], taken_at: str, expires_at: datetime) -> None:
        """Record how many people each unit expects on ``day`` (and units that expect none now)."""
        known, _ = self.day_units(day)
        for unit in sorted(set(expected) | set(known)):
            count = expected.get(unit, 0)
            if unit in known and known[unit].expected == count:
                continue
            HealthDayModel(day, unit.key).update(actions=[HealthDayModel.expected.set(count),
                                                          HealthDayModel.expires_at.set(expires_at)])
        HealthDayModel(day, ROSTER_ROW, taken_at=taken_at, expires_at=expires_at).save()

    # -- cases ----------------------------------------------------------------------------------
    def get_case(self, case_id: str, *, consistent: bool = True) -> StoredCase | None:
        try:
            return _case(HealthCaseModel.get(case_id, consistent_read=consistent))
        except DoesNotExist:
            return None

    def create_case(self, case: StoredCase) -> bool:
        return save_if(_case_model(case), HealthCaseModel.case_id.does_not_exist())

    def save_case(self, case: StoredCase, expected_version: int) -> bool:
        return save_if(_case_model(case), HealthCaseModel.version == expected_version)

    def cases(self, state: str, *, after: str | None = None) -> Iterator[StoredCase]:
        """Cases of a state, oldest first, from after the ``opened_at#case_id`` position."""
        condition = HealthCaseModel.opened_at >= after.split("#", 1)[0] if after else None
        for model in HealthCaseModel.by_state.query(state, condition):
            if after is not None and f"{model.opened_at}#{model.case_id}" <= after:
                continue
            yield _case(model)


def _number(value: int) -> Value:
    return Value(value, attribute=NumberAttribute())


def _update_if(row: HealthDayModel, actions: Sequence[Any], condition: Any) -> bool:
    # Through the table connection, returning nothing: ``Model.update`` would read back the whole
    # row (every person counted), growing each filing's response with the size of its unit.
    try:
        HealthDayModel._get_connection().update_item(row.day, row.unit, actions=list(actions), condition=condition,
                                                     return_values="NONE")
    except UpdateError as exc:
        if conditional_failed(exc):
            return False
        raise
    return True


MODELS: tuple[type[Model], ...] = (HealthReportModel, HealthDayModel, HealthCaseModel)
