"""Races, retries and hostile input around door passes and the door webhook."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import responses
import time_machine
from chalice.test import Client

from chalicelib.api import deps
from chalicelib.db.directory import PersonModel
from chalicelib.db.door import DoorPassModel, DoorRepository, PassageModel
from chalicelib.domain.door_signature import sign
from tests.support.entry import (
    GATEWAY_URL,
    WEBHOOK_SECRET,
    apply,
    decide,
    door_sync_messages,
    id_number,
    make_visible,
    run_door_sync,
    visitor_form,
)
from tests.support.hall import Tokens, open_campus

MORNING = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)
PASSES = re.compile(re.escape(GATEWAY_URL) + "/passes/.*")


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(MORNING, tick=True):
        yield open_campus(client)


def grant(pass_id: str = "20261130T090000-0a1b2c3d4e5f"):
    return deps.door_passes().grant(
        pass_id=pass_id, person="idc-x", name="王访客", kind="visitor", host="t001", credential_kind="id_card",
        credential_number=id_number(), gates=("east",), valid_from=MORNING + timedelta(hours=1),
        valid_to=MORNING + timedelta(hours=9))


def test_a_cancel_that_overtakes_the_grant_leaves_nothing_to_open_the_door(client: Client, tokens: Tokens) -> None:
    # Given the cancel's hook ran before the approval's (no pass yet)
    assert deps.door_passes().revoke("20261130T090000-0a1b2c3d4e5f", "cancelled") is None
    # When the approval's hook grants afterwards
    item = grant()
    # Then the pass is revoked, nothing is queued, and the views show no pass
    assert (item.state, item.kind) == ("revoked", "none")
    assert door_sync_messages() == []
    assert DoorPassModel.get("20261130T090000-0a1b2c3d4e5f").live is None


def test_a_push_waits_while_another_push_of_the_pass_is_in_flight(client: Client, tokens: Tokens) -> None:
    grant()
    deps.kv().claim("door-sync:20261130T090000-0a1b2c3d4e5f", 120)  # another consumer holds it
    with responses.RequestsMock(assert_all_requests_are_fired=False) as gateway:
        gateway.add(responses.POST, PASSES, json={})
        bodies, answer = run_door_sync(client)
        assert len(answer["batchItemFailures"]) == 1 and len(gateway.calls) == 0
        deps.kv().release("door-sync:20261130T090000-0a1b2c3d4e5f")
        make_visible()
        bodies, answer = run_door_sync(client)
        assert answer == {"batchItemFailures": []} and len(gateway.calls) == 1


def test_a_refused_pass_is_failed_once_and_not_swept_again(client: Client, tokens: Tokens) -> None:
    grant()
    with responses.RequestsMock() as gateway:
        gateway.add(responses.POST, PASSES, status=400, json={"code": "badCredential"})
        bodies, answer = run_door_sync(client)
    assert answer == {"batchItemFailures": []}  # nothing to retry: it goes to a person
    stored = DoorPassModel.get("20261130T090000-0a1b2c3d4e5f")
    assert (stored.sync_status, stored.sync_due) == ("failed", "refused")
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(hours=1)):
        assert deps.door_passes().sweep() == 0


def post(client: Client, raw: bytes, header: str) -> tuple[int, dict]:
    response = client.http.post("/webhooks/door/events", body=raw,
                                headers={"Content-Type": "application/json", "X-Door-Signature": header})
    return response.status_code, json.loads(response.body)


def batch(*ats: datetime) -> bytes:
    return json.dumps({"events": [
        {"event_id": f"e{i}", "gate": "east", "direction": "in", "at": at.isoformat(), "credential_kind": "face",
         "userid": "s001", "result": "granted"} for i, at in enumerate(ats)]}).encode()


@pytest.mark.parametrize("variant", [
    lambda h: h + ",v2=zz", lambda h: h.upper().replace("T=", "t=").replace("V1=", "v1="), lambda h: " " + h,
    lambda h: h.replace("t=", "t=0")])
def test_a_replay_is_refused_however_its_header_is_spelled(client: Client, variant) -> None:
    raw = batch(datetime.now(timezone.utc))
    header = sign(WEBHOOK_SECRET, raw, int(time.time()))
    assert post(client, raw, header)[0] == 200
    status, body = post(client, raw, variant(header))
    assert status == 401 and len(list(PassageModel.scan())) == 1


@pytest.mark.parametrize("t", ["9" * 400, "1" * 13, "-5"])
def test_an_absurd_timestamp_is_a_401_not_a_500(client: Client, t: str) -> None:
    raw = batch(datetime.now(timezone.utc))
    assert post(client, raw, f"t={t},v1=ab")[0] == 401


def test_events_far_from_now_are_rejected_one_by_one(client: Client) -> None:
    now = datetime.now(timezone.utc)
    raw = batch(now, now + timedelta(days=365 * 70), now - timedelta(days=400), now + timedelta(minutes=30))
    status, body = post(client, raw, sign(WEBHOOK_SECRET, raw, int(time.time())))
    assert status == 400 and body["stored"] == 2
    assert [(r["index"], r["errors"]) for r in body["rejected"]] == [(1, ["at"]), (2, ["at"])]


def test_a_batch_that_failed_half_way_is_accepted_when_the_door_system_retries_it(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(timezone.utc)
    raw = batch(now, now + timedelta(seconds=1), now + timedelta(seconds=2))
    header = sign(WEBHOOK_SECRET, raw, int(time.time()))
    real = DoorRepository.add_passage
    calls = {"n": 0}

    def flaky(self, passage, gate_day, expires_at):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("DynamoDB is having a moment")
        return real(self, passage, gate_day, expires_at)

    monkeypatch.setattr(DoorRepository, "add_passage", flaky)
    assert post(client, raw, header)[0] == 500
    # When the door system sends the same request again
    status, body = post(client, raw, header)
    # Then it is not taken for a replay: the rest is stored, the first not twice
    assert (status, body) == (200, {"stored": 2, "duplicates": 1})
    assert len(list(PassageModel.scan())) == 3


def test_a_members_id_card_is_the_member(client: Client, tokens: Tokens) -> None:
    key = deps.protector().lookup_key("id_number", id_number(555))
    PersonModel.get("t002").update(actions=[PersonModel.id_lookup.set(key)])
    now = datetime.now(timezone.utc)
    raw = json.dumps({"events": [{"event_id": "e1", "gate": "east", "direction": "in", "at": now.isoformat(),
                                  "credential_kind": "id_card", "id_number": id_number(555),
                                  "result": "granted"}]}).encode()
    assert post(client, raw, sign(WEBHOOK_SECRET, raw, int(time.time())))[0] == 200
    [row] = list(PassageModel.scan())
    assert (row.person, row.person_kind) == ("t002", "member")


def test_a_members_campus_card_is_the_member_even_without_a_userid(client: Client, tokens: Tokens) -> None:
    PersonModel.get("s003").update(actions=[PersonModel.card_no.set("C20010003")])
    now = datetime.now(timezone.utc)
    raw = json.dumps({"events": [{"event_id": "e1", "gate": "east", "direction": "in", "at": now.isoformat(),
                                  "credential_kind": "campus_card", "card_number": "C20010003",
                                  "result": "granted"}]}).encode()
    assert post(client, raw, sign(WEBHOOK_SECRET, raw, int(time.time())))[0] == 200
    [row] = list(PassageModel.scan())
    assert (row.person, row.person_kind, row.credential_masked) == ("s003", "member", "*****0003")


def test_tracing_refuses_absurd_periods_with_a_422(client: Client, tokens: Tokens) -> None:
    response = client.http.get("/trace/people/s001/passages?from=9999-12-31T00:00:00%2B00:00&to=9999-12-31T23:59:59"
                               "-14:00", headers={"Authorization": f"Bearer {tokens['bw01']}"})
    assert response.status_code == 422


def test_a_visit_too_far_ahead_is_refused(client: Client, tokens: Tokens) -> None:
    with time_machine.travel(MORNING, tick=True):
        status, body = apply(client, visitor_form(MORNING + timedelta(days=45)))
    assert status == 422 and "visit_start" in body["fields"]


def test_security_cannot_revoke_what_is_not_a_pass(client: Client, tokens: Tokens) -> None:
    # Given a pending application (no pass yet)
    status, app = apply(client, visitor_form(MORNING + timedelta(hours=1)))
    response = client.http.post(f"/entry/passes/{app['id']}/revoke", body=json.dumps({"reason": "x"}),
                                headers={"Authorization": f"Bearer {tokens['bw01']}",
                                         "Content-Type": "application/json"})
    assert response.status_code == 404
    # Then approving it still grants its pass
    decide(client, tokens["t001"], app["id"])
    decide(client, tokens["bw01"], app["id"])
    assert DoorPassModel.get(app["id"]).state == "granted"


def test_a_visitors_form_is_not_returned_for_editing(client: Client, tokens: Tokens) -> None:
    with time_machine.travel(MORNING, tick=True):
        status, app = apply(client, visitor_form(MORNING + timedelta(hours=1)))
        response = client.http.post(f"/applications/{app['id']}/decisions", body=json.dumps({"decision": "return"}),
                                    headers={"Authorization": f"Bearer {tokens['t001']}",
                                             "Content-Type": "application/json"})
    assert response.status_code == 409 and "reject" in json.loads(response.body)["message"]


def test_the_per_id_quota_counts_campus_days(client: Client, tokens: Tokens) -> None:
    # Given five applications at 23:30 on campus (15:30 UTC)
    evening = datetime(2026, 11, 30, 15, 30, tzinfo=timezone.utc)
    with time_machine.travel(evening, tick=True):
        for _ in range(5):
            assert apply(client, visitor_form(evening + timedelta(hours=1)))[0] == 201
        assert apply(client, visitor_form(evening + timedelta(hours=1)))[0] == 429
    # When the campus day turns at midnight (16:00 UTC), the quota is new
    with time_machine.travel(evening + timedelta(minutes=31), tick=True):
        assert apply(client, visitor_form(evening + timedelta(hours=1)))[0] == 201


def test_a_repeated_cancel_revokes_a_pass_whose_first_revoke_was_lost(client: Client, tokens: Tokens,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an approved visit whose cancel was stored but whose hook (the revoke) never ran
    with time_machine.travel(MORNING, tick=True):
        status, app = apply(client, visitor_form(MORNING + timedelta(hours=1)))
        decide(client, tokens["t001"], app["id"])
        decide(client, tokens["bw01"], app["id"])
    from chalicelib.domain import entry
    with monkeypatch.context() as patch:
        patch.setattr(entry.EntryDesk, "on_transition", lambda self, application, transition: None)
        status, body = post_json(client, f"/visitor/entry-applications/{app['id']}/cancel", {"token": app["token"]})
    assert status == 200 and DoorPassModel.get(app["id"]).state == "granted"
    # When the visitor cancels again
    status, body = post_json(client, f"/visitor/entry-applications/{app['id']}/cancel", {"token": app["token"]})
    # Then the pass is revoked
    assert (status, body["status"], body["pass_state"]) == (200, "cancelled", "revoked")


def post_json(client: Client, path: str, body: dict) -> tuple[int, dict]:
    response = client.http.post(path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return response.status_code, json.loads(response.body)


@pytest.mark.parametrize(("raw", "status"), [
    (b"[1, 2]", 422), (b'{"events": "x"}', 422), (b'{"events": [], "extra": 1}', 422),
    (json.dumps({"events": [{}] * 501}).encode(), 422), (b"[" * 5000, 400), (b"{not json", 400)])
def test_a_signed_body_that_is_not_a_batch_is_refused_and_stores_nothing(client: Client, raw: bytes,
                                                                         status: int) -> None:
    assert post(client, raw, sign(WEBHOOK_SECRET, raw, int(time.time())))[0] == status
    assert list(PassageModel.scan()) == []


def test_event_times_at_the_ends_of_the_calendar_are_rejected_not_a_500(client: Client) -> None:
    raw = batch(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=8))),
                datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))))
    status, body = post(client, raw, sign(WEBHOOK_SECRET, raw, int(time.time())))
    assert status == 400 and [r["errors"] for r in body["rejected"]] == [["at"], ["at"]]
    assert list(PassageModel.scan()) == []


def test_a_resent_visitor_submission_files_once_and_answers_a_fresh_token(client: Client, tokens: Tokens) -> None:
    form = visitor_form(MORNING + timedelta(hours=1))
    with time_machine.travel(MORNING, tick=True):
        first = client.http.post("/visitor/entry-applications", body=json.dumps(form),
                                 headers={"Content-Type": "application/json", "Idempotency-Key": "form-1"})
        again = client.http.post("/visitor/entry-applications", body=json.dumps(form),
                                 headers={"Content-Type": "application/json", "Idempotency-Key": "form-1"})
        other = client.http.post("/visitor/entry-applications", body=json.dumps(form),
                                 headers={"Content-Type": "application/json", "Idempotency-Key": "form-2"})
    first_body, again_body = json.loads(first.body), json.loads(again.body)
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 201)
    assert again_body["id"] == first_body["id"] != json.loads(other.body)["id"]
    # The fresh token reads it; the lost one no longer does
    lookup = f"/visitor/entry-applications/{first_body['id']}?token="
    assert client.http.get(lookup + again_body["token"]).status_code == 200
    assert client.http.get(lookup + first_body["token"]).status_code == 404
    # And the host has two applications to decide, not three
    approvals = client.http.get("/approvals", headers={"Authorization": f"Bearer {tokens['t001']}"})
    assert len(json.loads(approvals.body)["items"]) == 2
    bad = client.http.post("/visitor/entry-applications", body=json.dumps(form),
                           headers={"Content-Type": "application/json", "Idempotency-Key": "not ok!"})
    assert bad.status_code == 400
