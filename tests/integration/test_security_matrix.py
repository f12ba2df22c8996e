"""The security matrix: for every route that takes an object id, who may reach whose object.

Objects of each kind are made for one owner; every demo role then asks for them. The expected
outcome of each (actor, object) pair is written out by hand from DOMAIN.md's rules (not computed
from the access module): 200 for those in scope, 404 for everyone else (the same answer as for an
object that does not exist, so ids cannot be probed). A route with an object id that this module
does not cover must be listed in ELSEWHERE with the test that covers it, or the coverage test fails.

Also here: every public route is on a short list (a new unguarded route fails), and no request
body accepts a field the server owns.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from chalice.test import Client

from app import app as the_app
from chalicelib.api.openapi import declared_specs
from tests.integration.test_mailbox import LETTER
from tests.integration.test_repair import REPAIR
from tests.support.entry import apply, decide, visitor_form
from tests.support.hall import Tokens, open_campus, queued_notifications
from tests.support.health import FEVER, consent, file_report, queued_alerts, sqs_event
from tests.support.identity import call
from tests.support.leave import approve_all, file_leave, file_travel, leave_form, travel_form

MORNING = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 on campus
ACTORS = ["s001", "s002", "s011", "s016", "t001", "t002", "fdy01", "fdy02", "dean01", "xg01", "hr01", "doc01",
          "bw01", "hq01", "xl01", "leader01", "admin", "w001"]

# Who reaches each object (everyone else: 404). The owners: s001 (cs2001) for the leave, the
# repair application and order, and the letter; s002 (cs2001) for the health case; t001 (cs) for
# the trip and as the visitor's host.
ALLOWED: dict[str, set[str]] = {
    "GET /leave/{app_id}": {"s001", "fdy01", "dean01", "xg01"},  # the student, counselor, dept head, student affairs
    "GET /travel/{app_id}": {"t001", "dean01", "hr01"},  # the member of staff, dept head, HR
    "GET /applications/{app_id}": {"s001", "hq01"},  # the applicant and the chain (logistics)
    "GET /repairs/{order_id}": {"s001", "hq01"},  # the student and logistics
    "GET /mailbox/letters/{letter_id}": {"s001", "xg01"},  # the writer and the office
    # the person (their own data), the hospital and the student's circle
    "GET /health/cases/{case_id}": {"s002", "doc01", "fdy01", "dean01", "xg01"},
    "GET /entry/passes/{pass_id}": {"bw01", "t001"},  # security and the host
}
# Routes with an object id covered by other tests (their names say how).
ELSEWHERE = {
    "GET /people/{userid}": "test_access_matrix.py: every role x subject",
    "GET /admin/people/{userid}": "it_admin only (policy); test_access_matrix.py",
    "PATCH /admin/people/{userid}": "it_admin only (policy); test_directory.py",
    "PUT /admin/resources/{resource_id}": "it_admin only (policy); test_resources.py",
    "PUT /admin/services/{service_id}": "it_admin only (policy); test_hall.py",
    "PUT /applications/{app_id}": "applicant only; test_hall.py resubmit",
    "POST /applications/{app_id}/cancel": "applicant only; test_hall.py, test_leave_flows.py",
    "POST /applications/{app_id}/withdraw": "applicant only; test_hall.py",
    "POST /applications/{app_id}/decisions": "current authority only; test_leave_flows.py counselor of another class",
    "GET /applications/{app_id}/files": "readers of the application; test_hall.py uploads",
    "GET /counselling/slots/{slot_id}/booking": "booker and psych centre; test_counselling.py",
    "POST /counselling/slots/{slot_id}/booking": "any student (booking); test_counselling.py",
    "POST /counselling/slots/{slot_id}/booking/cancel": "the booker; test_counselling.py",
    "POST /counselling/slots/{slot_id}/withdraw": "psych centre only (policy); test_counselling.py",
    "POST /entry/passes/{pass_id}/revoke": "security only (policy); test_entry_flows.py",
    "POST /health/cases/{case_id}/events": "hospital only (policy); test_health_cases.py",
    "POST /leave/{app_id}/acknowledge": "the class counselor; test_leave_flows.py",
    "POST /leave/{app_id}/return": "the student; test_security_matrix.py owner-only actions",
    "POST /travel/{app_id}/return": "the member of staff; test_security_matrix.py owner-only actions",
    "POST /mailbox/letters/{letter_id}/close": "writer and office; test_mailbox.py",
    "POST /mailbox/letters/{letter_id}/forwards": "the office; test_mailbox.py",
    "POST /mailbox/letters/{letter_id}/replies": "office and forwarded-to office; test_mailbox.py",
    "GET /notices/{notice_id}": "recipients; test_notices.py",
    "GET /notices/{notice_id}/receipts": "the publisher; test_notices.py",
    "POST /repairs/{order_id}/assign": "logistics only (policy); test_repair.py",
    "POST /repairs/{order_id}/done": "logistics only (policy); test_repair.py",
    "POST /repairs/{order_id}/confirm": "the student; test_security_matrix.py owner-only actions",
    "POST /repairs/{order_id}/reopen": "the student; test_repair.py",
    "GET /resources/{resource_id}/go": "the resource's audience; test_resources.py",
    "GET /services/{service_id}": "the service's audience; test_catalogue_end_to_end.py",
    "POST /services/{service_id}/applications": "the service's audience; test_catalogue_end_to_end.py",
    "GET /statistics/services/{service_id}": "figures for leaders, it_admin, hr, student affairs (policy)",
    "GET /trace/people/{person}/contacts": "hospital and security (policy); test_door_events.py",
    "GET /trace/people/{person}/passages": "hospital and security (policy); test_door_events.py",
    "GET /visitor/entry-applications/{app_id}": "the visitor's token; test_entry_flows.py",
    "POST /visitor/entry-applications/{app_id}/cancel": "the visitor's token; test_entry_flows.py",
}
PUBLIC_ROUTES = {"GET /healthz", "GET /openapi.json", "POST /auth/wecom", "POST /auth/dev-login",
                 "POST /visitor/entry-applications", "GET /visitor/entry-applications/{app_id}",
                 "POST /visitor/entry-applications/{app_id}/cancel", "POST /webhooks/door/events",
                 "GET /wecom/callback", "POST /wecom/callback"}
SERVER_OWNED = {"status", "userid", "version", "created_at", "updated_at", "filed_at", "decided_at", "history",
                "applicant", "owner", "author", "id", "app_id", "returned_at", "acknowledged_at", "reminded_at"}
# Bodies that legitimately name one of those, and why.
SERVER_OWNED_ALLOWED = {
    ("PATCH /admin/people/{userid}", "status"): "the IT centre sets a person's status (it_admin only)",
    ("POST /health/consent", "version"): "the version of the consent text the person agrees to",
    ("PUT /admin/services/{service_id}", "id"): "must equal the path (422 otherwise)",
    ("PUT /admin/services/{service_id}", "version"): "ignored: the server stores the next version",
    ("PUT /admin/services/{service_id}", "filed_at"): "a definition's own endpoint for filing, not a time",
    ("POST /auth/dev-login", "userid"): "whom to log in as (the local stage only)",
    ("POST /health/cases/{case_id}/events", "status"): "the hospital records the case's status (hospital only)",
}


@pytest.fixture
def objects(client: Client) -> Iterator[tuple[Tokens, dict[str, str]]]:
    with time_machine.travel(MORNING, tick=True):
        tokens = open_campus(client)
        ids: dict[str, str] = {}
        _, leave = file_leave(client, tokens["s001"], leave_form(MORNING + timedelta(days=1), MORNING + timedelta(days=2)))
        approve_all(client, tokens, leave)
        ids["GET /leave/{app_id}"] = leave["id"]
        _, trip = file_travel(client, tokens["t001"], travel_form(MORNING.date() + timedelta(days=1),
                                                                  MORNING.date() + timedelta(days=2)))
        ids["GET /travel/{app_id}"] = trip["id"]
        status, repair = call(client, "POST", "/services/dorm-repair/applications", tokens["s001"], REPAIR)
        assert status == 201, repair
        assert call(client, "POST", f"/applications/{repair['id']}/decisions", tokens["hq01"],
                    {"decision": "approve"})[0] == 200
        ids["GET /applications/{app_id}"] = ids["GET /repairs/{order_id}"] = repair["id"]
        status, letter = call(client, "POST", "/mailbox/letters", tokens["s001"], LETTER)
        assert status == 201, letter
        ids["GET /mailbox/letters/{letter_id}"] = letter["id"]
        consent(client, tokens["s002"])
        assert file_report(client, tokens["s002"], FEVER)[0] == 201
        answer = client.lambda_.invoke("raise_health_alert", sqs_event("campus-health-alerts", queued_alerts()))
        assert answer.payload == {"batchItemFailures": []}
        cases = call(client, "GET", "/health/cases?state=open", tokens["doc01"])[1]["items"]
        ids["GET /health/cases/{case_id}"] = cases[0]["id"]
        status, visit = apply(client, visitor_form(MORNING + timedelta(hours=1)))
        assert status == 201, visit
        decide(client, tokens["t001"], visit["id"])
        decide(client, tokens["bw01"], visit["id"])
        ids["GET /entry/passes/{pass_id}"] = visit["id"]
        queued_notifications()
        yield tokens, ids


def test_who_reaches_whose_object(client: Client, objects: tuple[Tokens, dict[str, str]]) -> None:
    tokens, ids = objects
    table = []
    for route, allowed in ALLOWED.items():
        method, template = route.split(" ")
        placeholder = template[template.index("{"):template.index("}") + 1]
        path = template.replace(placeholder, ids[route])
        for actor in ACTORS:
            status = call(client, method, path, tokens[actor])[0]
            table.append((route, actor, status, 200 if actor in allowed else 404))
    wrong = [(route, actor, got, expected) for route, actor, got, expected in table if got != expected]
    assert wrong == [], "(route, actor, got, expected)"
    assert len(table) == len(ALLOWED) * len(ACTORS)


@pytest.mark.parametrize(("route", "owner"), [("POST /leave/{app_id}/return", "s001"),
                                              ("POST /travel/{app_id}/return", "t001"),
                                              ("POST /repairs/{order_id}/confirm", "s001")])
def test_only_the_owner_acts_on_their_object(client: Client, objects: tuple[Tokens, dict[str, str]], route: str,
                                             owner: str) -> None:
    tokens, ids = objects
    kind = {"leave": "GET /leave/{app_id}", "travel": "GET /travel/{app_id}", "repairs": "GET /repairs/{order_id}"}
    object_id = ids[kind[route.split("/")[1]]]
    path = route.split(" ")[1].replace("{app_id}", object_id).replace("{order_id}", object_id)
    body = {"rating": 5} if "confirm" in route else None
    for actor in ACTORS:
        if actor != owner:
            status = call(client, "POST", path, tokens[actor], body)[0]
            assert status in (403, 404), (route, actor, status)


def test_every_route_with_an_object_id_is_covered() -> None:
    with_ids = {f"{s.method} {s.path}" for s in declared_specs(the_app) if "{" in s.path}
    covered = set(ALLOWED) | set(ELSEWHERE)
    assert with_ids - covered == set(), "routes with an object id nobody checks for BOLA"
    assert covered - with_ids == set(), "entries for routes that no longer exist"


def test_only_the_listed_routes_are_public() -> None:
    public = {f"{s.method} {s.path}" for s in declared_specs(the_app) if not s.policy.name.startswith("authenticated")}
    assert public == PUBLIC_ROUTES


def test_no_request_body_sets_a_field_the_server_owns() -> None:
    found = set()
    for spec in declared_specs(the_app):
        if spec.body is None:
            continue
        route = f"{spec.method} {spec.path}"
        for name in spec.body.model_fields:
            if name in SERVER_OWNED and (route, name) not in SERVER_OWNED_ALLOWED:
                found.add((route, name))
        assert spec.body.model_config.get("extra") == "forbid", route  # so no unnamed field slips in either
    assert found == set()


@pytest.mark.parametrize("field", ["status", "userid", "version", "created_at", "roles"])
def test_a_body_naming_a_server_owned_field_is_refused_and_writes_nothing(client: Client,
                                                                          objects: tuple[Tokens, dict[str, str]],
                                                                          field: str) -> None:
    tokens, _ = objects
    value: Any = {"status": "approved", "userid": "admin", "version": 99, "created_at": "2020-01-01T00:00:00Z",
                  "roles": ["it_admin"]}[field]
    before = call(client, "GET", "/mailbox/letters", tokens["s002"])[1]
    status, body = call(client, "POST", "/mailbox/letters", tokens["s002"], {**LETTER, field: value})
    assert status == 422 and field in body["fields"], body
    assert call(client, "GET", "/mailbox/letters", tokens["s002"])[1] == before
    status, body = call(client, "POST", "/services/dorm-repair/applications", tokens["s002"], {**REPAIR, field: value})
    assert status == 422 and field in body["fields"], body
