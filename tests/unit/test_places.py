"""The fixed lists of the away flows, and the days an absence counts for."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from chalicelib.catalogue import shipped_definitions
from chalicelib.domain.absence import Absence, away_days, overdue_days, whereabouts_of
from chalicelib.domain.places import MAINLAND_PROVINCES, in_jinan, trip_number_problem

CAMPUS = ZoneInfo("Asia/Shanghai")


def test_the_province_list_is_the_31_mainland_divisions() -> None:
    assert len(MAINLAND_PROVINCES) == len(set(MAINLAND_PROVINCES)) == 31
    assert MAINLAND_PROVINCES[0] == "北京市" and MAINLAND_PROVINCES[-1] == "新疆维吾尔自治区"
    assert not {"台湾省", "香港特别行政区", "澳门特别行政区"} & set(MAINLAND_PROVINCES)


@pytest.mark.parametrize("service", ["student-leave", "leave-jinan"])
def test_the_destinations_of_the_away_services_offer_exactly_the_list(service: str) -> None:
    field = next(f for f in shipped_definitions()[service].fields if f.name == "destination")
    assert tuple(o.value for o in field.options) == MAINLAND_PROVINCES


@pytest.mark.parametrize("number", ["G1234", "g178", "K51", "D1", "Z9", "T110", "C2001", "1461", " G178 "])
def test_train_numbers_that_pass(number: str) -> None:
    assert trip_number_problem("train", number) is None


@pytest.mark.parametrize("number", ["G12345", "G0123", "X123", "146", "CA1234", "G-1234", "12345", ""])
def test_train_numbers_that_do_not(number: str) -> None:
    assert trip_number_problem("train", number) is not None


@pytest.mark.parametrize("number", ["CA1234", "MU5101", "3U8888", "G54381", "HU7", "ca981", "CZ3101A"])
def test_flight_numbers_that_pass(number: str) -> None:
    assert trip_number_problem("plane", number) is None


@pytest.mark.parametrize("number", ["1234", "CA12345", "CAA123", "33123", "CA", "CA-1234", None])
def test_flight_numbers_that_do_not(number: str | None) -> None:
    assert trip_number_problem("plane", number) is not None


@pytest.mark.parametrize("transport", ["car", "bus", "other"])
def test_other_transport_needs_no_number(transport: str) -> None:
    assert trip_number_problem(transport, None) is None and trip_number_problem(transport, "鲁A12345") is None


def test_jinan_is_recognised_with_or_without_its_suffix() -> None:
    assert in_jinan({"province": "山东省", "city": "济南市"}) and in_jinan({"province": "山东省", "city": "济南"})
    assert not in_jinan({"province": "山东省", "city": "青岛市"}) and not in_jinan(None)


def absence(start: str, end: str, status: str = "approved", returned_at: str | None = None,
            province: str = "江苏省", city: str = "南京市") -> Absence:
    return Absence(app_id="a", kind="leave", userid="s001", name="学生", person_type="student", department="cs",
                   class_id="cs2001", start=start, end=end, province=province, city=city, leaves_jinan=True,
                   transport="train", status=status, app_version=1, returned_at=returned_at)


@pytest.mark.parametrize(("start", "end", "returned", "days"), [
    # 09:00 Tuesday to 09:00 Wednesday (campus time): both days.
    ("2026-12-08T01:00:00+00:00", "2026-12-09T01:00:00+00:00", None, (date(2026, 12, 8), date(2026, 12, 9))),
    # Ending at campus midnight: the end is exclusive, the last day is the day before.
    ("2026-12-08T01:00:00+00:00", "2026-12-08T16:00:00+00:00", None, (date(2026, 12, 8), date(2026, 12, 8))),
    # Starting at 23:30 UTC is 07:30 the next campus day.
    ("2026-12-07T23:30:00+00:00", "2026-12-08T10:00:00+00:00", None, (date(2026, 12, 8), date(2026, 12, 8))),
    # Back early on Tuesday: the rows stop at the return day.
    ("2026-12-08T01:00:00+00:00", "2026-12-12T01:00:00+00:00", "2026-12-08T12:00:00+00:00",
     (date(2026, 12, 8), date(2026, 12, 8))),
    # Back late on Friday: the rows run to the return day.
    ("2026-12-08T01:00:00+00:00", "2026-12-09T01:00:00+00:00", "2026-12-11T02:00:00+00:00",
     (date(2026, 12, 8), date(2026, 12, 11))),
])
def test_the_days_an_approved_absence_counts(start: str, end: str, returned: str | None,
                                             days: tuple[date, date]) -> None:
    assert away_days(absence(start, end, returned_at=returned), CAMPUS) == days


@pytest.mark.parametrize("status", ["pending", "rejected", "withdrawn", "cancelled"])
def test_an_absence_not_approved_counts_no_day(status: str) -> None:
    assert away_days(absence("2026-12-08T01:00:00+00:00", "2026-12-09T01:00:00+00:00", status), CAMPUS) is None


def test_overdue_days_run_from_after_the_end_day_to_today_until_the_return() -> None:
    late = absence("2026-12-08T01:00:00+00:00", "2026-12-09T01:00:00+00:00")
    assert overdue_days(late, CAMPUS, date(2026, 12, 9)) is None  # the end day itself is a row
    assert overdue_days(late, CAMPUS, date(2026, 12, 12)) == (date(2026, 12, 10), date(2026, 12, 12))
    back = absence("2026-12-08T01:00:00+00:00", "2026-12-09T01:00:00+00:00", returned_at="2026-12-11T02:00:00+00:00")
    assert overdue_days(back, CAMPUS, date(2026, 12, 12)) is None


@pytest.mark.parametrize(("province", "city", "answers"), [
    ("江苏省", "南京市", {"whereabouts": "other_city", "current_city": {"province": "江苏省", "city": "南京市"}}),
    ("山东省", "济南市", {"whereabouts": "jinan"}),
])
def test_the_health_report_defaults_to_the_destination(province: str, city: str, answers: dict) -> None:
    away = absence("2026-12-08T01:00:00+00:00", "2026-12-09T01:00:00+00:00", province=province, city=city)
    assert whereabouts_of(away) == answers
