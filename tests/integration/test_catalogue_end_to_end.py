"""All 48 shipped services: listed for their audiences, filed and approved through their whole chain.

Each form is filled from its own definition (a valid value per field type, attachments really
uploaded), filed over HTTP by a member of the demo cast the service is for, and then approved step
by step by whoever holds each step's authority in the demo campus, until it is approved.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
import time_machine
from chalice.test import Client

from chalicelib.catalogue import shipped_definitions
from chalicelib.db.directory import DirectoryRepository
from chalicelib.domain.forms import FieldSpec, ServiceDefinition
from infra.local.aws import bucket_names
from tests.support.hall import open_campus
from tests.support.identity import call, login

DEFINITIONS = shipped_definitions()
APPLICANT_BY_TYPE = {"student": "s001", "staff": "t001", "third_party": "w001"}
OTHER_PERSON_BY_TYPE = {"staff": "t002", "student": "s003", "third_party": "w001"}


@pytest.fixture
def tokens(client: Client) -> dict[str, str]:
    return open_campus(client)


# Audiences pinned by hand from DOMAIN.md, so a wrong audience in services.json fails here.
PINNED_AUDIENCES = {
    "daily-health-report": {"staff", "student", "third_party"},
    "campus-entry": {"staff"},
    "student-leave": {"student"},
    "leave-jinan": {"staff"},
    "third-party-health": {"third_party"},
    "exam-deferral": {"student"},
    "transcript": {"student"},
    "enrolment-certificate": {"student"},
    "class-reschedule": {"staff"},
    "employment-certificate": {"staff"},
    "income-certificate": {"staff"},
    "seal-use": {"staff"},
    "official-car": {"staff"},
    "dorm-repair": {"student"},
    "dorm-change": {"student"},
    "counselling": {"staff", "student"},
    "mailbox": {"staff", "student"},
    "five-year-plan-suggestions": {"staff", "student", "third_party"},
    "campus-card-loss": {"staff", "student", "third_party"},
}


def test_key_audiences_match_the_domain() -> None:
    assert {sid: set(DEFINITIONS[sid].applicants.types) for sid in PINNED_AUDIENCES} == PINNED_AUDIENCES


def test_every_person_type_sees_exactly_the_services_for_it(client: Client, tokens: dict[str, str]) -> None:
    seen: set[str] = set()
    for person_type, userid in APPLICANT_BY_TYPE.items():
        # Given the services whose audience includes this person type
        expected = [d.id for d in DEFINITIONS.values() if person_type in d.applicants.types]
        # When they list the hall
        status, listing = call(client, "GET", "/services", tokens[userid])
        # Then they see exactly those, in catalogue order (category, then order)
        assert status == 200
        assert sorted(s["id"] for s in listing["items"]) == sorted(expected)
        categories = [s["category"] for s in listing["items"]]
        assert categories == sorted(categories, key=["epidemic", "teaching", "life"].index)
        seen |= set(expected)
    assert seen == set(DEFINITIONS) and len(seen) == 48


@pytest.mark.parametrize("service_id", sorted(DEFINITIONS))
def test_each_service_is_filed_and_approved_through_its_chain(client: Client, tokens: dict[str, str],
                                                              service_id: str) -> None:
    definition = DEFINITIONS[service_id]
    applicant = next(APPLICANT_BY_TYPE[t] for t in ("student", "staff", "third_party")
                     if t in definition.applicants.types)
    # Given a valid form for the service, filed by someone it is for
    form = fill(definition, applicant)
    status, app = call(client, "POST", f"/services/{service_id}/applications", tokens[applicant], {"data": form})
    if definition.filed_at:  # a booking or a letter: filed and handled at its area's own endpoint
        assert status == 409 and definition.filed_at.split()[1].split("{")[0] in app["message"]
        file_at_its_own_endpoint(client, tokens, service_id, applicant, form)
        return
    assert status == 201, app
    # When whoever holds each step's authority approves it in turn
    directory = DirectoryRepository()
    decided = []
    while app["status"] == "pending":
        approver = next(u for u in directory.holders(app["waiting_for"]) if u != applicant)
        status, app = call(client, "POST", f"/applications/{app['id']}/decisions",
                           tokens[approver], {"decision": "approve"})
        assert status == 200, app
        decided.append(approver)
    # Then it is approved after exactly one decision per step of its chain
    assert app["status"] == "approved"
    assert len(decided) == len(app["chain"])
    assert [t["verb"] for t in app["history"]] == ["file"] + ["approve"] * len(decided)


def file_at_its_own_endpoint(client: Client, tokens: dict[str, str], service_id: str, applicant: str,
                             form: dict[str, Any]) -> None:
    """Campus entry: the visitor applies on the public form, the host and security approve.
    Counselling: the centre publishes a slot, the applicant books it and the centre sees the
    booking. The mailbox: the applicant writes, the office replies. The daily health report: the
    catalogue's form, filled in, is accepted as a report (in the morning, before the cutoff)."""
    if service_id == "daily-health-report":
        morning = datetime.now(timezone.utc).replace(hour=1, minute=0) + timedelta(days=1)
        with time_machine.travel(morning, tick=True):
            token = login(client, applicant)
            status, consent = call(client, "GET", "/health/consent", token)
            call(client, "POST", "/health/consent", token, {"version": consent["version"], "agree": True})
            status, report = call(client, "POST", "/health/reports", token, form)
        assert status == 201, report
        assert set(report["answers"]) == set(form)
    elif service_id == "counselling":
        start = datetime.now(timezone.utc) + timedelta(days=3)
        slot = {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(), "counsellor": "张老师",
                "place": "心理中心 201", "mode": "in_person"}
        status, published = call(client, "POST", "/counselling/slots", tokens["xl01"], slot)
        assert status == 201, published
        status, booking = call(client, "POST", f"/counselling/slots/{published['id']}/booking", tokens[applicant],
                               {"topic": "学业压力"})
        assert status == 201, booking
        status, seen = call(client, "GET", f"/counselling/slots/{published['id']}/booking", tokens["xl01"])
        assert status == 200 and seen["topic"] == "学业压力"
    elif service_id == "campus-entry":
        # The visitor files it on the public form (the host's form, filled in, with a visit that
        # starts soon); the host and then the security office approve it.
        start = datetime.now(timezone.utc) + timedelta(hours=1)
        visit = {**form, "id_number": "110101199003071233", "mobile": "13912345678", "host": "t001",
                 "visit_start": start.isoformat(), "visit_end": (start + timedelta(hours=4)).isoformat()}
        status, receipt = call(client, "POST", "/visitor/entry-applications", body=visit)
        assert status == 201, receipt
        for approver in ("t001", "bw01"):
            status, app = call(client, "POST", f"/applications/{receipt['id']}/decisions", tokens[approver],
                               {"decision": "approve"})
            assert status == 200, app
        assert app["status"] == "approved"
    else:
        assert service_id == "mailbox"
        status, letter = call(client, "POST", "/mailbox/letters", tokens[applicant],
                              {"subject": "宿舍热水", "body": "热水经常停。", "anonymous": False})
        assert status == 201, letter
        status, reply = call(client, "POST", f"/mailbox/letters/{letter['id']}/replies", tokens["xg01"],
                             {"body": "已转后勤处理。"})
        assert status == 201, reply
        assert call(client, "GET", f"/mailbox/letters/{letter['id']}", tokens[applicant])[1]["status"] == "replied"


def fill(definition: ServiceDefinition, applicant: str) -> dict[str, Any]:
    """A valid value for every field (datetime and date fields in increasing order, from a few days
    ahead: a leave or a trip may not start in the past, nor more than a year ahead)."""
    base = (datetime.now(timezone(timedelta(hours=8))) + timedelta(days=4)).replace(hour=8, minute=0, second=0,
                                                                                     microsecond=0)
    form: dict[str, Any] = {}
    for index, spec in enumerate(definition.fields):
        form[spec.name] = AREA_VALUES.get(spec.name) or value_for(spec, applicant, base + timedelta(days=index),
                                                                  base.date() + timedelta(days=index))
    return form


# Fields an area checks beyond the form (travel by train needs a train number; leave and travel
# registrations go somewhere outside Jinan).
AREA_VALUES: dict[str, Any] = {"train_or_flight": "G178", "destination": {"province": "北京市", "city": "北京市"}}


def value_for(spec: FieldSpec, applicant: str, moment: datetime, day: date) -> Any:
    kind = spec.type
    if kind == "number":
        low = spec.min if spec.min is not None else 1
        return int(low) if spec.integer else low
    simple = {
        "text": "测试", "textarea": "测试说明", "date": day.isoformat(), "datetime": moment.isoformat(),
        "bool": True, "idcard": "11010519491231002X", "phone": "13800138000",
        "location": {"province": "山东省", "city": "济南市", "detail": "长清区"},
    }
    if kind in simple:
        return simple[kind]
    if kind == "select":
        return spec.options[0].value
    if kind == "multiselect":
        return [spec.options[0].value]
    if kind == "person":
        kinds = spec.person_types or ("staff",)
        return next(OTHER_PERSON_BY_TYPE[t] for t in kinds if OTHER_PERSON_BY_TYPE[t] != applicant)
    assert kind == "attachment"
    return [upload(applicant, spec.content_types[0] if spec.content_types else "application/pdf")]


def upload(owner: str, content_type: str) -> str:
    """An upload slot for ``owner`` with the file really in the bucket (as the H5 would PUT it)."""
    from chalicelib.api import deps
    from chalicelib.domain.uploads import new_key

    now = datetime.now(timezone.utc)
    key = new_key(content_type, now)
    deps.uploads().open(key, owner, content_type, 64, now, timedelta(days=1))
    boto3.client("s3").put_object(Bucket=bucket_names()[0], Key=key, Body=b"x" * 64, ContentType=content_type)
    return key
