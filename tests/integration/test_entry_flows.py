"""Campus entry: a visitor's public application, the host's and the security office's decisions, the
door pass and its sync to the door gateway (mocked at HTTP with ``responses``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import responses
import time_machine
from chalice.test import Client

from chalicelib.api import deps
from chalicelib.db.door import DoorPassModel
from chalicelib.domain.door_signature import verify
from tests.support.entry import (
    GATEWAY_SECRET,
    GATEWAY_URL,
    apply,
    decide,
    door_sync_messages,
    id_number,
    make_visible,
    run_door_sync,
    visitor_form,
)
from tests.support.hall import Tokens, open_campus, queued_notifications
from tests.support.health import scheduled_event
from tests.support.identity import call

MORNING = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)  # 09:00 on campus
VISIT = MORNING + timedelta(hours=1)
PASSES = re.compile(re.escape(GATEWAY_URL) + "/passes/.*")


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MORNING, tick=True):
        yield open_campus(client)


@pytest.fixture
def gateway() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def approved_visit(client: Client, tokens: Tokens, **changes) -> tuple[str, str]:
    status, body = apply(client, visitor_form(VISIT, **changes))
    assert status == 201, body
    decide(client, tokens["t001"], body["id"])
    decide(client, tokens["bw01"], body["id"])
    return body["id"], body["token"]


def gateway_calls(mock: responses.RequestsMock) -> list[dict]:
    return [json.loads(c.request.body) for c in mock.calls]


def test_a_visitor_is_approved_by_host_then_security_and_the_gateway_gets_the_exact_window(
        client: Client, tokens: Tokens, gateway: responses.RequestsMock) -> None:
    gateway.add_callback(responses.POST, PASSES,
                         callback=lambda request: (200, {}, '{"status":"ok"}'))
    # Given a visitor's application (no login)
    status, body = apply(client, visitor_form(VISIT))
    assert status == 201, body
    app_id, token = body["id"], body["token"]
    assert body["status"] == "pending" and body["step"] == "接待人确认"
    # When the host approves, the security office has it next
    decide(client, tokens["t001"], app_id)
    status, seen = call(client, "GET", f"/visitor/entry-applications/{app_id}?token={token}")
    assert (status, seen["status"], seen["step"], seen["pass_state"]) == (200, "pending", "保卫处审核", None)
    assert door_sync_messages() == []
    # And when security approves, a pass is created pending and queued once
    decide(client, tokens["bw01"], app_id)
    stored = DoorPassModel.get(app_id)
    assert (stored.state, stored.sync_status, int(stored.version)) == ("granted", "pending", 1)
    assert stored.credential_masked.startswith("3701") and id_number() not in json.dumps(stored.attribute_values,
                                                                                       default=str)
    # Then the consumer pushes it: the gateway holds the exact window, gates and ID number, signed
    bodies, answer = run_door_sync(client)
    assert bodies == [{"pass_id": app_id, "version": 1}] and answer == {"batchItemFailures": []}
    [sent] = gateway.calls
    payload = json.loads(sent.request.body)
    assert payload["op"] == "grant" and payload["version"] == 1 and payload["gates"] == ["east", "south"]
    assert payload["valid_from"] == "2026-11-30T02:00:00Z" and payload["valid_to"] == "2026-11-30T10:00:00Z"
    assert payload["credential"] == {"kind": "id_card", "number": id_number()}
    verify(GATEWAY_SECRET, sent.request.headers["X-Door-Signature"], sent.request.body.encode()
           if isinstance(sent.request.body, str) else sent.request.body, datetime.now(timezone.utc).timestamp())
    # And the visitor sees the pass in sync
    status, seen = call(client, "GET", f"/visitor/entry-applications/{app_id}?token={token}")
    assert (seen["status"], seen["pass_state"], seen["pass_sync"]) == ("approved", "granted", "synced")
    # And a repeated delivery of the same version does not grant again
    deps.queue_door_sync(app_id, 1)
    run_door_sync(client)
    assert len(gateway.calls) == 1


def test_the_visitor_cancels_and_the_pass_is_revoked_at_the_gateway(client: Client, tokens: Tokens,
                                                                      gateway: responses.RequestsMock) -> None:
    gateway.add_callback(responses.POST, PASSES,
                         callback=lambda request: (200, {}, "{}"))
    app_id, token = approved_visit(client, tokens)
    run_door_sync(client)
    # When the visitor cancels with the token
    status, body = call(client, "POST", f"/visitor/entry-applications/{app_id}/cancel",
                        body={"token": token, "reason": "行程取消"})
    assert (status, body["status"], body["pass_state"]) == (200, "cancelled", "revoked")
    # Then the revoke (version 2) reaches the gateway
    run_door_sync(client)
    assert [(c["op"], c["version"]) for c in gateway_calls(gateway)] == [("grant", 1), ("revoke", 2)]
    assert DoorPassModel.get(app_id).sync_status == "synced"
    # And cancelling again answers the same and changes nothing; a wrong token is a 404
    status, again = call(client, "POST", f"/visitor/entry-applications/{app_id}/cancel", body={"token": token})
    assert (status, again["status"], again["pass_state"]) == (200, "cancelled", "revoked")
    assert int(DoorPassModel.get(app_id).version) == 2
    assert call(client, "POST", f"/visitor/entry-applications/{app_id}/cancel",
                body={"token": "x" * 32})[0] == 404


def test_a_grant_overtaken_by_its_revoke_is_never_pushed(client: Client, tokens: Tokens,
                                                           gateway: responses.RequestsMock) -> None:
    gateway.add_callback(responses.POST, PASSES,
                         callback=lambda request: (200, {}, "{}"))
    # Given an approved visit cancelled before the consumer ran
    app_id, token = approved_visit(client, tokens)
    call(client, "POST", f"/visitor/entry-applications/{app_id}/cancel", body={"token": token})
    # When both messages are delivered
    bodies, answer = run_door_sync(client)
    assert sorted(b["version"] for b in bodies) == [1, 2] and answer == {"batchItemFailures": []}
    # Then only the revoke went out
    assert [(c["op"], c["version"]) for c in gateway_calls(gateway)] == [("revoke", 2)]


def test_gateway_down_keeps_the_pass_pending_then_it_syncs_once_without_a_duplicate(
        client: Client, tokens: Tokens, gateway: responses.RequestsMock) -> None:
    state = {"down": True}

    def door_system(request):
        return (503, {}, "busy") if state["down"] else (200, {}, "{}")

    gateway.add_callback(responses.POST, PASSES,
                         callback=door_system)
    app_id, _ = approved_visit(client, tokens)
    # When the gateway is down for two deliveries
    for _ in range(2):
        bodies, answer = run_door_sync(client)
        assert len(answer["batchItemFailures"]) == 1
        assert DoorPassModel.get(app_id).sync_status == "pending"
        # Then the message is held back (the backoff), not lost
        assert door_sync_messages() == []
        make_visible()
    # And when it recovers, the next delivery syncs it
    state["down"] = False
    bodies, answer = run_door_sync(client)
    assert answer == {"batchItemFailures": []}
    assert DoorPassModel.get(app_id).sync_status == "synced"
    # And the door system applied one grant: three tries of version 1, one success
    assert [(json.loads(c.request.body)["version"], c.response.status_code) for c in gateway.calls] == [
        (1, 503), (1, 503), (1, 200)]
    assert door_sync_messages() == []


def test_after_the_last_try_the_pass_is_failed_security_is_told_and_the_sweep_queues_it_again(
        client: Client, tokens: Tokens, gateway: responses.RequestsMock) -> None:
    gateway.add_callback(responses.POST, PASSES,
                         callback=lambda request: (503, {}, "down"))
    app_id, _ = approved_visit(client, tokens)
    queued_notifications()
    for _ in range(5):
        run_door_sync(client)
        make_visible()
    stored = DoorPassModel.get(app_id)
    assert (stored.sync_status, stored.sync_due) == ("failed", "failed")
    told = [n for n in queued_notifications() if n["title"] == "门禁同步失败"]
    assert [n["recipients"] for n in told] == [["bw01"]] and id_number() not in json.dumps(told, ensure_ascii=False)
    # When the expiry job runs 20 minutes later, the failed pass is queued again
    with time_machine.travel(MORNING + timedelta(minutes=20)):
        report = client.lambda_.invoke("expire_entry_passes", _scheduled(MORNING + timedelta(minutes=20))).payload
    assert report == {"revoked": 0, "requeued": 1}
    assert [json.loads(m["Body"]) for m in door_sync_messages()] == [{"pass_id": app_id, "version": 1}]


def _scheduled(at: datetime) -> dict:
    event = scheduled_event("expire_entry_passes")
    event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def test_the_expiry_job_revokes_passes_whose_window_ended(client: Client, tokens: Tokens,
                                                          gateway: responses.RequestsMock) -> None:
    gateway.add_callback(responses.POST, PASSES,
                         callback=lambda request: (200, {}, "{}"))
    app_id, _ = approved_visit(client, tokens, hours=2)
    later_id, _ = approved_visit(client, tokens, hours=30, id_number=id_number(124))
    run_door_sync(client)
    # When the job runs before the end, nothing changes; after it, the ended pass is revoked
    assert client.lambda_.invoke("expire_entry_passes", _scheduled(VISIT + timedelta(hours=1))).payload["revoked"] == 0
    report = client.lambda_.invoke("expire_entry_passes", _scheduled(VISIT + timedelta(hours=2, minutes=5))).payload
    assert report["revoked"] == 1
    assert DoorPassModel.get(app_id).state == "revoked" and DoorPassModel.get(later_id).state == "granted"
    assert DoorPassModel.get(app_id).revoked_because == "expired"
    run_door_sync(client)
    assert [(c["pass_id"], c["op"]) for c in gateway_calls(gateway)][-1] == (app_id, "revoke")
    # And running it again does nothing more
    assert client.lambda_.invoke("expire_entry_passes", _scheduled(VISIT + timedelta(hours=3))).payload == {
        "revoked": 0, "requeued": 0}


@pytest.mark.parametrize(("changes", "field"), [
    ({"id_number": "370102199001011230"}, "id_number"),  # checksum
    ({"mobile": "12345678901"}, "mobile"),
    ({"host": "s001"}, "host"),  # a student
    ({"host": "nobody"}, "host"),
    ({"pledge": False}, "pledge"),
    ({"hours": 24 * 7 + 1}, "visit_end"),
    ({"hours": -1}, "visit_end"),
])
def test_bad_applications_are_refused_with_the_field_and_nothing_is_stored(client: Client, tokens: Tokens,
                                                                           changes: dict, field: str) -> None:
    hours = changes.pop("hours", 8)
    status, body = apply(client, visitor_form(VISIT, hours=hours, **changes))
    assert status == 422 and field in body["fields"], body
    assert _stored_applications() == 0


def test_a_window_in_the_past_is_refused(client: Client, tokens: Tokens) -> None:
    with time_machine.travel(MORNING, tick=True):
        status, body = apply(client, visitor_form(MORNING - timedelta(hours=1)))
    assert status == 422 and body["fields"] == {"visit_start": "is in the past"}


def test_applications_are_limited_per_id_number_and_per_address(client: Client, tokens: Tokens,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with time_machine.travel(MORNING, tick=True):
        for _ in range(5):
            assert apply(client, visitor_form(VISIT))[0] == 201
        status, body = apply(client, visitor_form(VISIT))
        assert status == 429 and "ID number" in body["message"]
        assert apply(client, visitor_form(VISIT, id_number=id_number(200)))[0] == 201
        monkeypatch.setenv("ENTRY_RATE_PER_IP_HOUR", "7")
        status, body = apply(client, visitor_form(VISIT, id_number=id_number(201)))
        assert status == 429 and "network" in body["message"]
    assert _stored_applications() == 6


def test_the_status_needs_the_right_token(client: Client, tokens: Tokens) -> None:
    status, body = apply(client, visitor_form(VISIT))
    app_id = body["id"]
    assert call(client, "GET", f"/visitor/entry-applications/{app_id}?token={'A' * 32}")[0] == 404
    assert call(client, "GET", f"/visitor/entry-applications/20261130T010000-000000000000?token={body['token']}")[
        0] == 404
    assert call(client, "GET", f"/visitor/entry-applications/{app_id}")[0] == 422
    status, seen = call(client, "GET", f"/visitor/entry-applications/{app_id}?token={body['token']}")
    # The status only: nothing of the form comes back
    assert status == 200 and not {"name", "id_number", "mobile"} & set(seen)


def test_a_pass_is_shown_to_security_and_the_host_masked_and_audited(client: Client, tokens: Tokens) -> None:
    app_id, _ = approved_visit(client, tokens)
    status, seen = call(client, "GET", f"/entry/passes/{app_id}", tokens["bw01"])
    assert status == 200 and seen["credential"].startswith("3701") and "*" in seen["credential"]
    assert call(client, "GET", f"/entry/passes/{app_id}", tokens["t001"])[0] == 200
    assert call(client, "GET", f"/entry/passes/{app_id}", tokens["s001"])[0] == 404
    assert call(client, "POST", f"/entry/passes/{app_id}/revoke", tokens["t001"], {"reason": "x"})[0] == 403
    status, revoked = call(client, "POST", f"/entry/passes/{app_id}/revoke", tokens["bw01"], {"reason": "违规"})
    assert (status, revoked["state"], revoked["version"]) == (200, "revoked", 2)


def test_a_returning_students_campus_card_is_granted_on_approval(client: Client, tokens: Tokens) -> None:
    form = {"return_time": (MORNING + timedelta(days=2)).isoformat(), "from_location":
            {"province": "山东省", "city": "青岛市"}, "transport": "train", "train_or_flight": "G123",
            "health_code": "green", "risk_area": False, "pledge": True}
    status, app = call(client, "POST", "/services/student-return/applications", tokens["s001"], {"data": form})
    assert status == 201, app
    decide(client, tokens["fdy01"], app["app_id"] if "app_id" in app else app["id"])
    app_id = app.get("app_id") or app["id"]
    stored = DoorPassModel.get(app_id)
    assert (stored.kind, stored.credential_kind, stored.person, list(stored.gates)) == (
        "return", "campus_card", "s001", ["east", "west", "south", "north"])
    assert stored.valid_from == "2026-12-01T13:00:00.000Z"


def _stored_applications() -> int:
    from chalicelib.db.hall import MODELS
    table = next(m for m in MODELS if m.Meta.table_name.endswith("applications"))
    return sum(1 for _ in table.scan())  # (a test may scan)
