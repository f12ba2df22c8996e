"""Notification rules: splitting, payloads, mass-send pacing."""

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from chalicelib.domain.notifications import MAX_TOUSER, Notification, mass_send_delay, notify, notify_all, split, wecom_payload


def note(n: int, **extra) -> Notification:
    return Notification(key="k1", recipients=tuple(f"u{i}" for i in range(n)), title="提醒", body="请填报", **extra)


def test_parts_hold_at_most_1000_recipients_in_order():
    parts = split(note(2501))
    assert [len(p.recipients) for p in parts] == [1000, 1000, 501]
    assert [p.part_key for p in parts] == ["k1#p0", "k1#p1", "k1#p2"]
    assert sum((p.recipients for p in parts), ()) == tuple(f"u{i}" for i in range(2501))
    assert all(len(p.recipients) <= MAX_TOUSER for p in parts)


def test_recipients_are_deduplicated_case_insensitively():
    assert Notification(key="k", recipients=("A", "a", " b "), body="x").recipients == ("a", "b")
    with pytest.raises(ValidationError):
        Notification(key="k", recipients=(), body="x")
    with pytest.raises(ValidationError):
        Notification(key="bad key!", recipients=("a",), body="x")


@pytest.mark.parametrize(("hh_mm_ss", "delay"), [
    ("07:58:30", 210), ("08:00:00", 120), ("08:01:59", 1), ("08:02:00", 0), ("08:29:00", 180), ("08:15:00", 0),
])
def test_mass_sends_keep_away_from_the_hour_and_half_hour(hh_mm_ss, delay):
    h, m, s = map(int, hh_mm_ss.split(":"))
    assert mass_send_delay(datetime(2026, 11, 30, h, m, s, tzinfo=timezone.utc)) == delay


def test_notify_publishes_every_part_with_the_mass_delay_only_for_mass_sends():
    sent = []
    at_eight = lambda: datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)  # noqa: E731
    assert notify(note(1500, mass=True), lambda parts, delay: sent.append((len(parts), delay)), at_eight) == 2
    notify(note(3), lambda parts, delay: sent.append((len(parts), delay)), at_eight)
    assert sent == [(2, 120), (1, 0)]


def test_notify_all_publishes_once_per_delay_with_every_part_in_order():
    sent = []
    at_eight = lambda: datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)  # noqa: E731
    batch = [note(1500, mass=True), note(3), note(2, mass=True)]
    assert notify_all(batch, lambda parts, delay: sent.append(([len(p["recipients"]) for p in parts], delay)),
                      at_eight) == 4
    assert sent == [([1000, 500, 2], 120), ([3], 0)]


@pytest.mark.parametrize("kind", ["text", "textcard", "markdown"])
def test_payloads_follow_wecom_message_send(kind):
    part = split(note(2, kind=kind, url="https://h5.example/r/1"))[0]
    payload = wecom_payload(part, ["u0", "u1"], 1000002)
    assert payload["touser"] == "u0|u1" and payload["msgtype"] == kind and payload["agentid"] == 1000002
    assert payload["enable_duplicate_check"] == 1
    assert kind in payload
