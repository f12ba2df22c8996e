"""The rules of daily health reporting, without storage: abnormal rules, the form, days, scopes."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.catalogue import shipped_definitions
from chalicelib.domain.access import Actor, Subject
from chalicelib.domain.health import (
    CampusClock,
    Filter,
    Grant,
    HealthAnswers,
    HealthRules,
    Unit,
    alert_circle,
    check_filter,
    due_slots,
    parse_times,
    scope_of,
)
from chalicelib.errors import Forbidden

NORMAL: dict[str, Any] = {"temperature": 36.5, "symptoms": ["none"], "whereabouts": "on_campus",
                          "health_code": "green", "close_contact": False, "risk_area": False, "quarantined": False,
                          "pledge": True}
CAMPUS = CampusClock(ZoneInfo("Asia/Shanghai"), time(20, 0))


def answers(**change: Any) -> HealthAnswers:
    return HealthAnswers.model_validate({**NORMAL, **change})


@pytest.mark.parametrize(("change", "reasons"), [
    ({}, ()),
    ({"temperature": 37.2}, ()),
    ({"temperature": 37.3}, ("temperature",)),
    ({"temperature": 42.0}, ("temperature",)),
    ({"symptoms": ["cough"]}, ("symptoms",)),
    ({"symptoms": ["other"], "symptom_note": "头痛"}, ("symptoms",)),
    ({"health_code": "yellow"}, ("health_code",)),
    ({"health_code": "red"}, ("health_code",)),
    ({"close_contact": True}, ("close_contact",)),
    ({"risk_area": True}, ("risk_area",)),
    ({"quarantined": True, "quarantine_place": "家中", "quarantine_start": "2026-11-28"}, ("quarantined",)),
    ({"temperature": 38.0, "symptoms": ["fever"], "health_code": "red", "risk_area": True},
     ("temperature", "symptoms", "health_code", "risk_area")),
])
def test_abnormal_reasons_by_default(change: dict, reasons: tuple) -> None:
    assert HealthRules().assess(answers(**change)) == reasons


def test_thresholds_and_flags_are_configurable() -> None:
    rules = HealthRules(fever_from=Decimal("37.5"), abnormal_codes=frozenset({"red"}), flags=frozenset({"risk_area"}))
    assert rules.assess(answers(temperature=37.4, health_code="yellow", close_contact=True)) == ()
    assert rules.assess(answers(temperature=37.5, health_code="red", risk_area=True)) == (
        "temperature", "health_code", "risk_area")


@given(st.decimals(min_value=Decimal("35.0"), max_value=Decimal("42.0"), places=1))
def test_temperature_alone_decides_at_the_threshold(temperature: Decimal) -> None:
    reasons = HealthRules().assess(answers(temperature=str(temperature)))
    assert (reasons == ("temperature",)) is (temperature >= Decimal("37.3"))


@pytest.mark.parametrize(("change", "field"), [
    ({"temperature": "abc"}, "temperature"),
    ({"temperature": 34.9}, "temperature"),
    ({"temperature": 42.1}, "temperature"),
    ({"temperature": 36.55}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"symptoms": []}, "symptoms"),
    ({"symptoms": ["cough", "cough"]}, "symptoms"),
    ({"symptoms": ["none", "fever"]}, "symptoms"),
    ({"symptoms": ["sneeze"]}, "symptoms.0"),
    ({"symptoms": ["other"]}, "symptom_note"),
    ({"whereabouts": "mars"}, "whereabouts"),
    ({"whereabouts": "other_city"}, "current_city"),
    ({"whereabouts": "other_city", "current_city": {"province": "北京市"}}, "current_city.city"),
    ({"quarantined": True}, "quarantine_place"),
    ({"quarantined": True, "quarantine_place": "家中"}, "quarantine_start"),
    ({"close_contact": 1}, "close_contact"),
    ({"pledge": False}, "pledge"),
    ({"remarks": "x" * 501}, "remarks"),
    ({"userid": "s001"}, "userid"),
])
def test_bad_answers_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        answers(**change)
    assert field in {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}


def test_stored_answers_drop_absent_fields_and_keep_the_temperature_a_number() -> None:
    stored = answers(temperature=37.0, remarks="  ok ").stored()
    assert stored["temperature"] == 37.0 and stored["remarks"] == "ok" and "symptom_note" not in stored


def test_the_form_matches_the_catalogue_definition() -> None:
    """The H5 renders the catalogue's form and files it at /health/reports: same fields, same options."""
    definition = shipped_definitions()["daily-health-report"]
    assert definition.filed_at == "POST /health/reports"
    assert {f.name for f in definition.fields} == set(HealthAnswers.model_fields)
    options = {f.name: {o.value for o in f.options} for f in definition.fields if f.options}
    assert options["symptoms"] == set(get_args(get_args(HealthAnswers.model_fields["symptoms"].annotation)[0]))
    assert options["whereabouts"] == set(get_args(HealthAnswers.model_fields["whereabouts"].annotation))
    assert options["health_code"] == set(get_args(HealthAnswers.model_fields["health_code"].annotation))
    required = {f.name for f in definition.fields if f.required}
    assert required == {n for n, f in HealthAnswers.model_fields.items() if f.is_required()}


def test_the_campus_day_is_counted_in_shanghai() -> None:
    assert CAMPUS.day(datetime(2026, 11, 29, 15, 59, tzinfo=timezone.utc)) == date(2026, 11, 29)  # 23:59
    assert CAMPUS.day(datetime(2026, 11, 29, 16, 0, tzinfo=timezone.utc)) == date(2026, 11, 30)  # 00:00
    assert CAMPUS.is_open(datetime(2026, 11, 30, 11, 59, 59, tzinfo=timezone.utc))
    assert not CAMPUS.is_open(datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc))  # 20:00


def test_slots_are_due_from_their_time_for_a_window() -> None:
    slots = parse_times("14:00,08:00")
    assert slots == (time(8), time(14))
    at = lambda h, m: datetime(2026, 11, 30, h - 8, m, tzinfo=timezone.utc)  # noqa: E731
    window = timedelta(minutes=50)
    assert due_slots(at(13, 59), CAMPUS, slots, window) == []
    assert due_slots(at(14, 0), CAMPUS, slots, window) == [(date(2026, 11, 30), time(14))]
    assert due_slots(at(14, 49), CAMPUS, slots, window) == [(date(2026, 11, 30), time(14))]
    assert due_slots(at(14, 50), CAMPUS, slots, window) == []
    with pytest.raises(ValueError):
        parse_times("8am")


CAST = {
    "counselor": Actor("fdy01", "staff", "cs", frozenset({"counselor"}), counselor_of=frozenset({"cs2001"})),
    "dept_head": Actor("dean01", "staff", "cs", frozenset({"dept_head"}), dept_head_of="cs"),
    "hr": Actor("hr01", "staff", "rsc", frozenset({"hr"})),
    "student_affairs": Actor("xg01", "staff", "xgb", frozenset({"student_affairs"})),
    "hospital": Actor("doc01", "staff", "xyy", frozenset({"hospital"})),
    "leader": Actor("leader01", "staff", "nic", frozenset({"leader"})),
    "it_admin": Actor("admin", "staff", "nic", frozenset({"it_admin"})),
    "student": Actor("s001", "student", "cs", class_id="cs2001"),
}
UNITS = {
    "cs2001": Unit("cs", "cs2001", "student"),
    "fl2001": Unit("fl", "fl2001", "student"),
    "cs staff": Unit("cs", None, "staff"),
    "fl staff": Unit("fl", None, "staff"),
    "hq contractors": Unit("hq", None, "third_party"),
}
SEES_PEOPLE = {
    "counselor": {"cs2001"},
    "dept_head": {"cs2001", "cs staff"},
    "hr": {"cs staff", "fl staff"},
    "student_affairs": {"cs2001", "fl2001"},
    "hospital": set(UNITS),
    "leader": set(),
    "it_admin": set(),
    "student": set(),
}


@pytest.mark.parametrize("role", sorted(CAST))
def test_scopes_follow_the_roles(role: str) -> None:
    scope = scope_of(CAST[role])
    assert {name for name, unit in UNITS.items() if scope.sees_people(unit)} == SEES_PEOPLE[role]
    figures = set(UNITS) if role == "leader" else SEES_PEOPLE[role]
    assert {name for name, unit in UNITS.items() if scope.sees_figures(unit)} == figures


def test_a_filter_outside_the_scope_is_refused() -> None:
    grants = scope_of(CAST["counselor"]).people
    check_filter(grants, Filter(class_id="cs2001"), "cs")
    with pytest.raises(Forbidden):
        check_filter(grants, Filter(class_id="fl2001"), "fl")
    with pytest.raises(Forbidden):
        check_filter(grants, Filter(class_id="nope"), None)
    with pytest.raises(Forbidden):
        check_filter((Grant(department="cs"),), Filter(department="fl"), None)


@pytest.mark.parametrize(("subject", "circle"), [
    (Subject("s001", "student", "cs", "cs2001"), ("role:hospital", "role:student_affairs", "counselor:cs2001")),
    (Subject("t001", "staff", "cs"), ("role:hospital", "role:hr", "dept_head:cs")),
    (Subject("w001", "third_party", "hq"), ("role:hospital", "dept_head:hq")),
])
def test_the_alert_circle(subject: Subject, circle: tuple) -> None:
    assert alert_circle(subject) == circle
