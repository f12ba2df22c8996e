"""The door system's signed event webhook, who is on campus, the counts, and the tracing routes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from chalice.test import Client

from chalicelib.db.audit import AuditModel
from chalicelib.db.door import DoorPassModel, PassageModel
from chalicelib.domain.door_signature import sign
from tests.support.entry import WEBHOOK_SECRET, apply, decide, id_number, visitor_form
from tests.support.hall import Tokens, open_campus

NOON = datetime(2026, 11, 30, 4, 0, tzinfo=timezone.utc)  # 12:00 on campus


@pytest.fixture
def tokens(client: Client) -> Iterator[Tokens]:
    with time_machine.travel(NOON, tick=True):
        yield open_campus(client)


def event(userid: str | None, at: datetime, direction: str = "in", gate: str = "east", **changes: Any) -> dict:
    item = {"event_id": f"ev-{uuid.uuid4().hex}", "gate": gate, "direction": direction,
            "at": at.isoformat(), "credential_kind": "campus_card", "card_number": userid, "userid": userid,
            "result": "granted"}
    item.update(changes)
    return item


def post(client: Client, events: list[dict], *, t: int | None = None, secret: str = WEBHOOK_SECRET,
         body: bytes | None = None, signature: str | None = None) -> tuple[int, Any]:
    raw = body if body is not None else json.dumps({"events": events}).encode()
    header = signature or sign(secret, raw, t if t is not None else int(time.time()))
    response = client.http.post("/webhooks/door/events", body=raw,
                                headers={"Content-Type": "application/json", "X-Door-Signature": header})
    return response.status_code, json.loads(response.body)


def stored() -> list[dict]:
    return [m.attribute_values for m in PassageModel.scan()]  # (a test may scan)


def test_a_signed_batch_is_stored_once_and_counted(client: Client, tokens: Tokens) -> None:
    with time_machine.travel(NOON, tick=True):
        batch = [event("s001", NOON - timedelta(hours=3)), event("s002", NOON - timedelta(hours=3, minutes=-1)),
                 event("s001", NOON - timedelta(hours=1), "out", gate="west")]
        assert post(client, batch) == (200, {"stored": 3, "duplicates": 0})
        # A redelivery (signed anew, a second later) stores nothing twice
        assert post(client, batch, t=int(time.time()) + 1) == (200, {"stored": 0, "duplicates": 3})
        # Then s002 is on campus, s001 left
        status, inside = client_get(client, tokens["bw01"], "/trace/on-campus")
        assert status == 200 and [(p["person"], p["name"], p["gate"]) for p in inside["items"]] == [
            ("s002", _name("s002"), "east")]
        # And the counts are by campus hour: 09:00 at the east gate twice, 11:00 at the west gate once
        status, stats = client_get(client, tokens["doc01"], "/door/stats?date=2026-11-30")
        assert stats["total"] == 3
        assert {g["gate"]: {h: n for h, n in enumerate(g["hours"]) if n} for g in stats["gates"]} == {
            "east": {9: 2}, "west": {11: 1}}


def _name(userid: str) -> str:
    from chalicelib.api import deps
    return deps.directory().get_person(userid).name


def client_get(client: Client, token: str, path: str) -> tuple[int, Any]:
    response = client.http.get(path, headers={"Authorization": f"Bearer {token}"})
    return response.status_code, json.loads(response.body)


@pytest.mark.parametrize("attack", ["tampered body", "tampered signature", "wrong secret", "stale", "future",
                                    "missing", "replay"])
@time_machine.travel(NOON, tick=True)
def test_tampered_stale_and_replayed_batches_are_refused_and_store_nothing(client: Client, attack: str) -> None:
    raw = json.dumps({"events": [event("s001", NOON)]}).encode()
    now = int(time.time())
    good = sign(WEBHOOK_SECRET, raw, now)
    if attack == "replay":
        assert post(client, [], body=raw, signature=good)[0] == 200
        before = stored()
        status, body = post(client, [], body=raw, signature=good)
        assert status == 401 and "replay" in body["message"] and stored() == before
        return
    cases = {
        "tampered body": dict(body=raw.replace(b"s001", b"s002"), signature=good),
        "tampered signature": dict(body=raw, signature=good[:-1] + ("0" if good[-1] != "0" else "1")),
        "wrong secret": dict(body=raw, secret="another-secret"),
        "stale": dict(body=raw, t=now - 301),
        "future": dict(body=raw, t=now + 301),
        "missing": dict(body=raw, signature=" "),
    }
    status, body = post(client, [], **cases[attack])
    assert status == 401 and body["code"] == "unauthorized", body
    assert stored() == []


@time_machine.travel(NOON, tick=True)
def test_malformed_events_are_listed_while_the_good_ones_are_stored(client: Client) -> None:
    good = event("s001", NOON)
    bad_direction = event("s002", NOON, direction="sideways")
    bad_id = event(None, NOON, credential_kind="id_card", id_number="370102199001011230", card_number=None)
    no_time = {k: v for k, v in event("s003", NOON).items() if k != "at"}
    status, body = post(client, [good, bad_direction, bad_id, no_time, "junk"])
    assert status == 400 and body["stored"] == 1
    assert [(r["index"], r["event_id"]) for r in body["rejected"]] == [
        (1, bad_direction["event_id"]), (2, bad_id["event_id"]), (3, no_time["event_id"]), (4, None)]
    assert "direction" in body["rejected"][0]["errors"] and "at" in body["rejected"][2]["errors"]
    assert [s["event_id"] for s in stored()] == [good["event_id"]]
    # And an unparseable body is a 400 too, nothing stored
    assert post(client, [], body=b"{not json")[0] == 400


def test_unknown_credentials_are_unknown_people_and_a_visitors_id_card_is_their_pass(client: Client,
                                                                                    tokens: Tokens) -> None:
    with time_machine.travel(NOON, tick=True):
        status, app = apply(client, visitor_form(NOON + timedelta(minutes=5)))
        decide(client, tokens["t001"], app["id"])
        decide(client, tokens["bw01"], app["id"])
        visitor = DoorPassModel.get(app["id"]).person
        swipe = event(None, NOON + timedelta(minutes=10), credential_kind="id_card", id_number=id_number(),
                      card_number=None)
        stranger = event(None, NOON + timedelta(minutes=11), credential_kind="id_card", id_number=id_number(777),
                         card_number=None)
        card = event(None, NOON + timedelta(minutes=12), card_number="99999999")
        assert post(client, [swipe, stranger, card])[0] == 200
    rows = {r["event_id"]: r for r in stored()}
    assert (rows[swipe["event_id"]]["person"], rows[swipe["event_id"]]["person_kind"]) == (visitor, "visitor")
    assert rows[stranger["event_id"]]["person_kind"] == "unknown"
    assert rows[card["event_id"]]["person_kind"] == "unknown" and rows[card["event_id"]]["person"].startswith("card-")
    # No ID number or card number is stored in clear
    dump = json.dumps(list(rows.values()), default=str)
    assert id_number() not in dump and id_number(777) not in dump and "99999999" not in dump


def test_tracing_is_for_security_and_the_hospital_and_every_query_is_audited(client: Client,
                                                                              tokens: Tokens) -> None:
    with time_machine.travel(NOON, tick=True):
        base = NOON - timedelta(hours=4)
        post(client, [event("s001", base), event("s002", base + timedelta(minutes=4)),
                      event("s003", base + timedelta(minutes=11)), event("s004", base, gate="west"),
                      event("s001", base + timedelta(hours=2), "out", gate="west"),
                      event("s004", base + timedelta(hours=2, minutes=10), "out", gate="west")])
        period = f"from={(base - timedelta(hours=1)).isoformat()}&to={NOON.isoformat()}".replace("+", "%2B")
        status, found = client_get(client, tokens["doc01"], f"/trace/people/s001/contacts?{period}")
        assert status == 200, found
        # s002 passed the east gate 4 minutes after s001; s003 11 minutes after (outside 10); s004 10 minutes
        # after s001 left by the west gate (inside, inclusive)
        assert [(c["person"], c["overlaps"]) for c in found["contacts"]] == [("s002", 1), ("s004", 1)]
        assert [t["gate"] for t in found["contacts"][1]["times"]] == ["west"]
        status, wider = client_get(client, tokens["bw01"], f"/trace/people/s001/contacts?{period}&window_minutes=11")
        assert {c["person"] for c in wider["contacts"]} == {"s002", "s003", "s004"} and wider["total_contacts"] == 3
        status, first = client_get(client, tokens["bw01"],
                                   f"/trace/people/s001/contacts?{period}&window_minutes=11&limit=1")
        assert len(first["contacts"]) == 1 and first["total_contacts"] == 3
        status, passages = client_get(client, tokens["bw01"], f"/trace/people/s001/passages?{period}")
        assert [p["direction"] for p in passages["items"]] == ["in", "out"]
        # Others may not
        for userid in ("t001", "xg01", "leader01"):
            assert client_get(client, tokens[userid], f"/trace/people/s001/passages?{period}")[0] == 403
        assert client_get(client, tokens["t001"], "/door/stats?date=2026-11-30")[0] == 403
        # A period too long or backwards is refused
        too_long = f"from={(base - timedelta(days=40)).isoformat()}&to={NOON.isoformat()}".replace("+", "%2B")
        assert client_get(client, tokens["bw01"], f"/trace/people/s001/passages?{too_long}")[0] == 400
    actions = sorted((a.actor, a.action) for a in AuditModel.scan() if a.action.startswith("trace."))
    assert actions == [("bw01", "trace.contacts"), ("bw01", "trace.contacts"), ("bw01", "trace.passages"),
                       ("doc01", "trace.contacts")]
