"""Leave and travel under the cases that break naive code: a stale copy syncing rows after a
return, dates at the ends of the calendar, a catalogue edited under the area, destinations that
contradict themselves, a reminder racing a return, a record that fails, a prefill before the start."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from chalice.test import Client

from chalicelib.api import deps
from chalicelib.catalogue import shipped_definitions
from chalicelib.db.absence import AwayDayModel
from tests.support.hall import Tokens, open_campus, queued_notifications
from tests.support.identity import call
from tests.support.leave import approve_all, file_leave, file_travel, leave_form, travel_form

MORNING = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 on campus
TUESDAY = MORNING + timedelta(days=1)
MONDAY = date(2026, 12, 7)


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MORNING, tick=True):
        yield open_campus(client)


def row_days(userid: str, app_id: str, first: date, last: date) -> list[str]:
    found = []
    day = first
    while day <= last:
        if any(r.app_id == app_id for r in AwayDayModel.query(day.isoformat(), filter_condition=AwayDayModel.userid == userid)):
            found.append(day.isoformat())
        day += timedelta(days=1)
    return found


def test_a_stale_copy_syncing_after_a_return_brings_no_day_back(client: Client, tokens: Tokens) -> None:
    _, app = file_leave(client, tokens["s001"], leave_form(TUESDAY, TUESDAY + timedelta(days=4)))
    approve_all(client, tokens, app)
    desk = deps.absence_desk()
    stale = desk.store.get("s001", app["id"])
    assert row_days("s001", app["id"], MONDAY, MONDAY + timedelta(days=7)) == [
        "2026-12-08", "2026-12-09", "2026-12-10", "2026-12-11", "2026-12-12"]
    with time_machine.travel(TUESDAY + timedelta(hours=3), tick=True):
        assert call(client, "POST", f"/leave/{app['id']}/return", Tokens(client)["s001"])[0] == 200
    # A hook rerun or the overdue job holding the old copy syncs late
    desk._sync_rows(stale)
    desk.record(deps.applications().get(app["id"]), "leave")
    assert row_days("s001", app["id"], MONDAY, MONDAY + timedelta(days=7)) == ["2026-12-08"]
    with time_machine.travel(TUESDAY + timedelta(hours=4), tick=True):
        body = call(client, "GET", "/leave/overview?date=2026-12-10", Tokens(client)["xg01"])[1]
    assert body["away"] == 0


@pytest.mark.parametrize(("changes", "field"), [
    ({"end": "9999-12-31T23:00:00-08:00"}, "data.end"),
    ({"start": "0001-01-01T00:30:00+08:00"}, "data.start"),
    ({"end": "2150-01-01T10:00:00+08:00"}, "data.end"),
])
def test_leave_dates_at_the_ends_of_the_calendar_are_422(client: Client, tokens: Tokens, changes: dict,
                                                         field: str) -> None:
    status, body = file_leave(client, tokens["s001"], {**leave_form(TUESDAY, TUESDAY + timedelta(days=1)), **changes})
    assert status == 422 and field in body["fields"], body


@pytest.mark.parametrize(("changes", "field"), [
    ({"return_date": "9999-12-31"}, "data.return_date"),
    ({"departure_date": "0001-01-01"}, "data.departure_date"),
])
def test_travel_dates_at_the_ends_of_the_calendar_are_422(client: Client, tokens: Tokens, changes: dict,
                                                          field: str) -> None:
    form = {**travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2)), **changes}
    status, body = file_travel(client, tokens["t001"], form)
    assert status == 422 and field in body["fields"], body


def test_the_catalogue_cannot_drop_or_rename_a_field_the_area_reads(client: Client, tokens: Tokens) -> None:
    base = shipped_definitions()["leave-jinan"].model_dump(mode="json")
    renamed = [{**f, "name": "leave_date"} if f["name"] == "departure_date" else f for f in base["fields"]]
    status, body = call(client, "PUT", "/admin/services/leave-jinan", tokens["admin"], {**base, "fields": renamed})
    assert status == 422 and "fields.departure_date" in body["fields"], body
    retyped = [{"name": "destination", "label": "目的地", "type": "text", "required": True}
               if f["name"] == "destination" else f for f in base["fields"]]
    status, body = call(client, "PUT", "/admin/services/leave-jinan", tokens["admin"], {**base, "fields": retyped})
    assert status == 422 and "fields.destination" in body["fields"]
    # Dropping the province list from the form does not open the destination to anything
    open_list = [{k: v for k, v in f.items() if k != "options"} if f["name"] == "destination" else f
                 for f in base["fields"]]
    assert call(client, "PUT", "/admin/services/leave-jinan", tokens["admin"], {**base, "fields": open_list})[0] == 200
    form = travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2),
                       destination={"province": "台湾省", "city": "台北市"})
    status, body = file_travel(client, tokens["t001"], form)
    assert status == 422 and "data.destination" in body["fields"], body


@pytest.mark.parametrize(("destination", "leaves", "field"), [
    ({"province": "北京市", "city": "北京市"}, False, "data.leaves_jinan"),
    ({"province": "山东省", "city": "济南市"}, True, "data.leaves_jinan"),
])
def test_a_leave_whose_destination_contradicts_leaving_jinan_is_refused(client: Client, tokens: Tokens,
                                                                        destination: dict, leaves: bool,
                                                                        field: str) -> None:
    form = leave_form(TUESDAY, TUESDAY + timedelta(days=1), destination=destination, leaves_jinan=leaves)
    status, body = file_leave(client, tokens["s001"], form)
    assert status == 422 and field in body["fields"], body


def test_a_travel_registration_to_jinan_is_refused(client: Client, tokens: Tokens) -> None:
    form = travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2),
                       destination={"province": "山东省", "city": "济南市"})
    status, body = file_travel(client, tokens["t001"], form)
    assert status == 422 and "Jinan" in body["fields"]["data.destination"]


class StaleIndex:
    """The absence store, whose awaiting index answers copies taken earlier (a lagging GSI)."""

    def __init__(self, inner: Any, stale: list) -> None:
        self.inner, self.stale = inner, stale

    def awaiting(self, kind: str, ended_by: str) -> Iterator:
        return iter([a for a in self.stale if a.kind == kind])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_reminder_is_not_sent_for_a_return_the_index_has_not_seen(client: Client, tokens: Tokens) -> None:
    _, app = file_leave(client, tokens["s002"], leave_form(TUESDAY, TUESDAY + timedelta(days=1)))
    approve_all(client, tokens, app)
    end = TUESDAY + timedelta(days=1)
    desk = deps.absence_desk()
    stale = [desk.store.get("s002", app["id"])]
    with time_machine.travel(end + timedelta(minutes=10), tick=True):
        assert call(client, "POST", f"/leave/{app['id']}/return", Tokens(client)["s002"])[0] == 200
    queued_notifications()
    lagging = dataclasses.replace(desk, store=StaleIndex(desk.store, stale), clock=lambda: end + timedelta(minutes=20))
    assert lagging.remind_overdue()["reminded"] == 0
    assert queued_notifications() == []


class FailingFor:
    """The absence store, failing reads of one person's records."""

    def __init__(self, inner: Any, userid: str) -> None:
        self.inner, self.userid = inner, userid

    def get(self, userid: str, app_id: str) -> Any:
        if userid == self.userid:
            raise RuntimeError("throttled")
        return self.inner.get(userid, app_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_one_failing_reminder_does_not_stop_the_others(client: Client, tokens: Tokens) -> None:
    ids = {}
    for student in ("s003", "s004"):
        _, app = file_leave(client, tokens[student], leave_form(TUESDAY, TUESDAY + timedelta(days=1)))
        approve_all(client, tokens, app)
        ids[student] = app["id"]
    queued_notifications()
    desk = deps.absence_desk()
    after = TUESDAY + timedelta(days=1, minutes=5)
    failing = dataclasses.replace(desk, store=FailingFor(desk.store, "s003"), clock=lambda: after)
    assert failing.remind_overdue() == {"reminded": 1, "already": 0, "held": 0, "failed": 1}
    assert sorted(n["recipients"][0] for n in queued_notifications()) == ["fdy01", "s004"]
    # The next run reminds the one that failed, and only it
    assert dataclasses.replace(desk, clock=lambda: after + timedelta(minutes=30)).remind_overdue()["reminded"] == 1


def test_a_filing_whose_record_fails_is_still_filed_and_recorded_later(client: Client, tokens: Tokens,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.domain.absence import AbsenceDesk

    original = AbsenceDesk.record

    def broken(self: AbsenceDesk, app: Any, kind: str) -> Any:
        raise RuntimeError("absences table throttled")

    monkeypatch.setattr(AbsenceDesk, "record", broken)
    status, app = file_travel(client, tokens["t001"], travel_form(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2)))
    monkeypatch.setattr(AbsenceDesk, "record", original)
    assert status == 201 and app["status"] == "approved", app
    status, record = call(client, "GET", f"/travel/{app['id']}", tokens["t001"])
    assert status == 200 and record["status"] == "approved"  # mirrored on first read (or by the hook's retry)


def test_the_prefill_calls_nobody_away_before_the_leave_starts(client: Client, tokens: Tokens) -> None:
    evening = MORNING + timedelta(hours=9)  # 18:00 today
    _, app = file_leave(client, tokens["s005"], leave_form(evening, evening + timedelta(days=1),
                                                            destination={"province": "江苏省", "city": "南京市"}))
    approve_all(client, tokens, app)
    body = call(client, "GET", "/health/reports/prefill", tokens["s005"])[1]
    assert body["away"] is None
    with time_machine.travel(evening + timedelta(minutes=5), tick=True):
        body = call(client, "GET", "/health/reports/prefill", Tokens(client)["s005"])[1]
    assert body["away"]["id"] == app["id"] and json.dumps(body["answers"], ensure_ascii=False).count("南京市") == 1
