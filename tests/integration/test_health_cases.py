"""Abnormal reports -> the alert consumer -> health cases, and the people each case reaches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from threading import Barrier

import pytest
import time_machine
from chalice.test import Client

from chalicelib.db.audit import AuditModel
from chalicelib.db.health import HealthCaseModel, HealthReportModel
from chalicelib.resources import HEALTH_ALERTS
from tests.support.hall import Tokens, open_campus, queued_notifications
from tests.support.health import FEVER, NORMAL, consent, file_report, queued_alerts, scheduled_event, sqs_event
from tests.support.identity import call

MORNING = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)
DAY = "2026-11-30"
EVERYONE = {"admin", "hr01", "doc01", "xg01", "bw01", "hq01", "xl01", "leader01", "dean01", "fdy01", "fdy02", "t001",
            "t002", "w001", *(f"s{n:03d}" for n in range(1, 21))}


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MORNING, tick=True):
        yield open_campus(client)


def alert(client: Client, bodies: list) -> dict:
    return client.lambda_.invoke("raise_health_alert", sqs_event(HEALTH_ALERTS.name, bodies)).payload


def file_abnormal(client: Client, tokens: Tokens, userid: str, answers: dict = FEVER) -> dict:
    consent(client, tokens[userid])
    status, body = file_report(client, tokens[userid], answers)
    assert status in (200, 201) and body["abnormal"] is True, body
    return body


def recipients(parts: list[dict]) -> set[str]:
    return {u for part in parts for u in part["recipients"]}


@pytest.mark.parametrize(("userid", "circle"), [
    ("s001", {"doc01", "xg01", "fdy01"}),  # a student of cs2001: hospital, student affairs, counselor
    ("s016", {"doc01", "xg01", "fdy02"}),  # a student of fl2001: another counselor
    ("t001", {"doc01", "hr01", "dean01"}),  # staff of cs: hospital, HR, the department head
    ("w001", {"doc01"}),  # third-party staff of hq (no department head there): the hospital
])
def test_an_abnormal_report_opens_a_case_and_tells_exactly_its_circle(client: Client, tokens: Tokens, userid: str,
                                                                        circle: set[str]) -> None:
    # Given an abnormal report, queued
    file_abnormal(client, tokens, userid)
    [message] = queued_alerts()
    queued_notifications()  # (nothing else is waiting)
    # When the consumer runs
    assert alert(client, [message]) == {"batchItemFailures": []}
    # Then one open case exists for the person
    [case] = list(HealthCaseModel.by_state.query("open"))
    assert (case.userid, case.status, list(case.reports)) == (userid, "reported", [f"{DAY}#v1"])
    # And exactly the circle is messaged, nobody else, and not the person
    parts = queued_notifications()
    assert recipients(parts) == circle
    assert not recipients(parts) & (EVERYONE - circle)
    assert parts[0]["key"] == f"health-alert:{case.case_id}:{DAY}v1"
    assert "38.1" not in json.dumps(parts, ensure_ascii=False)  # reasons, not values


def test_the_consumer_is_idempotent_per_report_version(client: Client, tokens: Tokens) -> None:
    file_abnormal(client, tokens, "s002")
    [message] = queued_alerts()
    # When the same alert is delivered three times (twice in one batch)
    assert alert(client, [message, message]) == {"batchItemFailures": []}
    assert alert(client, [message]) == {"batchItemFailures": []}
    # Then one case holds the report once, and every message has the same key (sent once)
    [case] = list(HealthCaseModel.by_state.query("open"))
    assert list(case.reports) == [f"{DAY}#v1"] and int(case.version) == 1
    assert {p["key"] for p in queued_notifications()} == {f"health-alert:{case.case_id}:{DAY}v1"}


def test_a_new_abnormal_version_joins_the_open_case(client: Client, tokens: Tokens) -> None:
    file_abnormal(client, tokens, "s003")
    alert(client, queued_alerts())
    # A correction with the same reasons (a higher temperature) tells nobody again
    file_abnormal(client, tokens, "s003", {**FEVER, "temperature": 38.6})
    assert queued_alerts() == []
    # One with new reasons does, and joins the open case
    file_abnormal(client, tokens, "s003", {**FEVER, "health_code": "red"})
    [message] = queued_alerts()
    assert message["version"] == 3
    alert(client, [message])
    [case] = list(HealthCaseModel.by_state.query("open"))
    assert list(case.reports) == [f"{DAY}#v1", f"{DAY}#v3"]


def test_a_superseded_or_corrected_version_raises_nothing(client: Client, tokens: Tokens) -> None:
    file_abnormal(client, tokens, "s004")
    [message] = queued_alerts()
    file_report(client, tokens["s004"], NORMAL)  # corrected before the alert was handled
    assert alert(client, [message]) == {"batchItemFailures": []}
    assert list(HealthCaseModel.by_state.query("open")) == []
    assert queued_notifications() == []


def test_bad_messages_fail_alone(client: Client, tokens: Tokens) -> None:
    file_abnormal(client, tokens, "s005")
    [good] = queued_alerts()
    event = sqs_event(HEALTH_ALERTS.name, ["not json", good, {"userid": "s005"}])
    answer = client.lambda_.invoke("raise_health_alert", event).payload
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    assert failed == {event["Records"][0]["messageId"], event["Records"][2]["messageId"]}
    assert len(list(HealthCaseModel.by_state.query("open"))) == 1


def test_the_hospital_records_events_and_each_tells_the_circle(client: Client, tokens: Tokens) -> None:
    file_abnormal(client, tokens, "t002")
    alert(client, queued_alerts())
    queued_notifications()
    [case] = list(HealthCaseModel.by_state.query("open"))
    path = f"/health/cases/{case.case_id}/events"

    # Only the hospital records events
    assert call(client, "POST", path, tokens["hr01"], {"status": "observing"})[0] == 403
    status, body = call(client, "POST", path, tokens["doc01"], {"status": "observing", "note": "居家观察"})
    assert status == 201 and body["status"] == "observing" and body["open"] is True
    assert body["events"][0]["note"] == "居家观察" and body["events"][0]["actor"] == "doc01"
    assert recipients(queued_notifications()) == {"doc01", "hr01"}  # staff of fl, which has no head in the cast
    status, body = call(client, "POST", path, tokens["doc01"], {"status": "cleared", "note": "复测正常"})
    assert status == 201 and body["open"] is False
    assert call(client, "POST", path, tokens["doc01"], {"status": "observing"})[0] == 409
    assert call(client, "POST", path, tokens["doc01"], {"status": "healed"})[0] == 422
    assert call(client, "POST", "/health/cases/nope/events", tokens["doc01"], {"status": "observing"})[0] == 404
    stored = HealthCaseModel.get(case.case_id)
    assert stored.state == "closed"
    assert "复测正常" not in json.dumps(list(stored.events), ensure_ascii=False)  # notes are sealed


def test_cases_are_listed_in_scope_and_every_read_is_audited(client: Client, tokens: Tokens) -> None:
    for userid in ("s001", "s016", "t001"):
        file_abnormal(client, tokens, userid)
    alert(client, queued_alerts())

    def listed(userid: str) -> set[str]:
        status, body = call(client, "GET", "/health/cases", tokens[userid])
        assert status == 200, body
        return {c["userid"] for c in body["items"]}

    assert listed("doc01") == {"s001", "s016", "t001"}
    assert listed("fdy01") == {"s001"}
    assert listed("fdy02") == {"s016"}
    assert listed("hr01") == {"t001"}
    assert listed("xg01") == {"s001", "s016"}
    assert listed("dean01") == {"s001", "t001"}
    assert listed("leader01") == set() and listed("admin") == set() and listed("s001") == set()
    reads = {(a.actor, a.subject) for a in AuditModel.scan() if a.action == "health.case.read"}
    assert ("fdy01", "person#s001") in reads and ("fdy02", "person#s001") not in reads
    assert ("doc01", "person#t001") in reads

    # A single case outside my scope is not found; my own is visible
    [own] = [c for c in HealthCaseModel.by_state.query("open") if c.userid == "s016"]
    assert call(client, "GET", f"/health/cases/{own.case_id}", tokens["fdy01"])[0] == 404
    assert call(client, "GET", f"/health/cases/{own.case_id}", tokens["s016"])[0] == 200


def test_cases_page_through_with_a_cursor(client: Client, tokens: Tokens) -> None:
    for userid in ("s006", "s007", "s008"):
        file_abnormal(client, tokens, userid)
    alert(client, queued_alerts())
    seen, cursor = [], None
    while True:
        path = "/health/cases?limit=2" + (f"&next={cursor}" if cursor else "")
        status, body = call(client, "GET", path, tokens["doc01"])
        seen += [c["userid"] for c in body["items"]]
        cursor = body["next"]
        if not cursor:
            break
    assert sorted(seen) == ["s006", "s007", "s008"]


def test_an_alert_whose_queueing_failed_is_sent_by_the_sweep(client: Client, tokens: Tokens) -> None:
    # Given an abnormal report whose alert was never marked queued (the filing died after the write)
    file_abnormal(client, tokens, "s009")
    queued_alerts()
    HealthReportModel.get("s009", DAY).update(actions=[HealthReportModel.alert_pending.set("pending")])
    # When the sweep runs a few minutes later
    with time_machine.travel(datetime(2026, 11, 30, 1, 10, tzinfo=timezone.utc), tick=False):
        result = client.lambda_.invoke("resend_health_alerts", scheduled_event("resend_health_alerts")).payload
    # Then the alert is queued again and the flag cleared
    assert result["alerts_requeued"] == 1
    assert queued_alerts() == [{"userid": "s009", "day": DAY, "version": 1}]
    assert HealthReportModel.get("s009", DAY).alert_pending is None


def test_after_clearance_a_new_abnormal_report_opens_a_new_case(client: Client, tokens: Tokens) -> None:
    file_abnormal(client, tokens, "s010")
    alert(client, queued_alerts())
    [first] = list(HealthCaseModel.by_state.query("open"))
    status, _ = call(client, "POST", f"/health/cases/{first.case_id}/events", tokens["doc01"], {"status": "cleared"})
    assert status == 201
    file_abnormal(client, tokens, "s010", {**FEVER, "close_contact": True})
    alert(client, queued_alerts())
    [second] = list(HealthCaseModel.by_state.query("open"))
    assert second.case_id != first.case_id and list(second.reports) == [f"{DAY}#v2"]
    assert list(HealthCaseModel.get(first.case_id).reports) == [f"{DAY}#v1"]


def test_alerts_racing_for_one_person_open_one_case(client: Client, tokens: Tokens) -> None:
    from chalicelib.api import deps

    file_abnormal(client, tokens, "s011")
    file_abnormal(client, tokens, "s011", {**FEVER, "risk_area": True})
    assert len(queued_alerts()) == 2
    barrier = Barrier(2)

    def handle(_: int) -> str:
        barrier.wait()  # two deliveries of the current version's alert, at once
        return deps.health_cases().raise_alert("s011", DAY, 2)

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(handle, range(2)))
    assert outcomes == ["alerted", "alerted"]
    [case] = list(HealthCaseModel.by_state.query("open"))
    assert list(case.reports) == [f"{DAY}#v2"]


def test_hospital_staff_do_not_manage_their_own_case(client: Client, tokens: Tokens) -> None:
    file_abnormal(client, tokens, "doc01")
    alert(client, queued_alerts())
    [case] = list(HealthCaseModel.by_state.query("open"))
    status, body = call(client, "POST", f"/health/cases/{case.case_id}/events", tokens["doc01"], {"status": "cleared"})
    assert status == 403


def test_malformed_case_ids_are_not_found(client: Client, tokens: Tokens) -> None:
    assert call(client, "GET", "/health/cases/" + "x" * 3000, tokens["doc01"])[0] == 404
    assert call(client, "GET", "/health/cases/hc20261130zzzz", tokens["doc01"])[0] == 404
