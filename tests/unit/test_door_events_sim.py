"""The door-event simulator: the batch it builds and the signed request it sends."""

from __future__ import annotations

import json
import random
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import responses

from chalicelib.domain.door_signature import verify
from infra.local.door_events import build_events, default_api_url, default_secret, main

START = datetime(2026, 11, 29, 0, 0, tzinfo=timezone.utc)
PEOPLE = ["s001", "s002", "t001"]
EVENT_ID = re.compile(r"^sim-[0-9a-f]{32}$")
AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
API = "http://127.0.0.1:8000"
SECRET = "sim-secret"


def known(events: list[dict]) -> list[dict]:
    return [event for event in events if event["userid"] is not None]


def test_given_people_then_the_batch_alternates_in_and_out_per_person_with_increasing_times():
    events = build_events(PEOPLE, 30, START, random.Random(7))

    assert len(events) == 31
    times = [datetime.fromisoformat(event["at"]) for event in events]
    assert times == sorted(times) and len(set(times)) == len(times) and times[0] > START
    assert all(AT.match(event["at"]) for event in events)
    for person in {event["userid"] for event in known(events)}:
        directions = [event["direction"] for event in known(events) if event["userid"] == person]
        assert directions == ["in", "out"] * (len(directions) // 2) + ["in"] * (len(directions) % 2)


def test_given_a_batch_then_every_event_fits_the_webhook_format():
    events = build_events(PEOPLE, 20, START, random.Random(1))

    assert len({event["event_id"] for event in events}) == len(events)
    for event in events:
        assert EVENT_ID.match(event["event_id"])
        assert event["gate"] in {"east", "west", "south", "north"}
        assert event["credential_kind"] == "campus_card" and event["id_number"] is None
        assert set(event) == {
            "event_id", "gate", "direction", "at", "credential_kind", "card_number", "id_number", "userid", "result"
        }
    for event in known(events):
        assert event["userid"] in PEOPLE
        assert event["card_number"] == event["userid"] and event["result"] == "granted"


def test_given_a_batch_then_it_holds_exactly_one_unknown_card():
    events = build_events(PEOPLE, 5, START, random.Random(3))

    unknown = [event for event in events if event["userid"] is None]
    assert len(unknown) == 1
    assert unknown[0]["card_number"] == "99999999" and unknown[0]["credential_kind"] == "campus_card"


def test_given_the_same_seed_then_people_gates_and_times_repeat_but_event_ids_do_not():
    first = build_events(PEOPLE, 10, START, random.Random(42))
    again = build_events(PEOPLE, 10, START, random.Random(42))

    def strip(events):
        return [{k: v for k, v in event.items() if k != "event_id"} for event in events]

    assert strip(first) == strip(again)
    assert {e["event_id"] for e in first}.isdisjoint(e["event_id"] for e in again)


def test_given_a_gate_then_every_event_uses_it():
    assert {event["gate"] for event in build_events(PEOPLE, 10, START, random.Random(0), gate="south")} == {"south"}


def test_given_a_naive_start_then_it_is_taken_as_utc():
    events = build_events(PEOPLE, 1, START.replace(tzinfo=None), random.Random(0))

    assert all(event["at"].startswith("2026-11-29T00:") for event in events)


@pytest.mark.parametrize(("people", "count"), [([], 3), (PEOPLE, -1)])
def test_given_no_people_or_a_negative_count_then_nothing_is_built(people, count):
    with pytest.raises(ValueError):
        build_events(people, count, START, random.Random(0))


@responses.activate
def test_main_posts_a_signed_batch_and_prints_the_answer(capsys):
    responses.post(f"{API}/webhooks/door/events", json={"accepted": 4, "duplicates": 0})

    code = main(["--api-url", API + "/", "--secret", SECRET, "--count", "3", "--people", "s001, s002", "--seed", "5"])

    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"accepted": 4, "duplicates": 0}
    request = responses.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    assert verify(SECRET, request.headers["X-Door-Signature"], request.body, now=time.time()) > 0
    events = json.loads(request.body)["events"]
    assert len(events) == 4
    assert {event["userid"] for event in known(events)} <= {"s001", "s002"}


@responses.activate
def test_main_reports_a_refused_batch(capsys):
    responses.post(f"{API}/webhooks/door/events", status=401, json={"code": "unauthorized", "message": "bad"})

    assert main(["--api-url", API, "--secret", SECRET]) == 1
    assert "HTTP 401" in capsys.readouterr().err


@responses.activate
def test_main_defaults_to_the_local_stack_state_and_stage_secret(tmp_path, monkeypatch):
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"api_url": "http://127.0.0.1:38017"}))
    monkeypatch.setenv("LOCAL_STACK_STATE", str(state))
    monkeypatch.setattr("infra.local.door_events.default_secret", lambda: SECRET)
    responses.post("http://127.0.0.1:38017/webhooks/door/events", json={"accepted": 21})

    assert main(["--gate", "east"]) == 0
    request = responses.calls[0].request
    assert verify(SECRET, request.headers["X-Door-Signature"], request.body, now=time.time()) > 0
    assert {event["gate"] for event in json.loads(request.body)["events"]} == {"east"}


def test_given_no_state_file_then_there_is_no_default_api_url(tmp_path):
    assert default_api_url(tmp_path / "missing.json") is None


def write_config(project: Path, config: dict) -> Path:
    (project / ".chalice").mkdir(parents=True)
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    return project


def test_the_secret_comes_from_the_local_stage_first_then_the_top_level(tmp_path):
    top = {"DOOR_WEBHOOK_SECRET": "top"}
    stage_first = write_config(
        tmp_path / "a",
        {
            "environment_variables": top,
            "stages": {"local": {"environment_variables": {"DOOR_WEBHOOK_SECRET": "local"}}},
        },
    )
    top_only = write_config(tmp_path / "b", {"environment_variables": top, "stages": {"local": {}}})

    assert default_secret(stage_first) == "local"
    assert default_secret(top_only) == "top"
    assert default_secret(tmp_path) is None


def test_main_without_a_secret_exits_with_a_usage_error(monkeypatch):
    monkeypatch.setattr("infra.local.door_events.default_secret", lambda: None)

    with pytest.raises(SystemExit) as caught:
        main(["--api-url", API])

    assert caught.value.code == 2
