"""A generated campus day of gate passages, a fast way to store it, and a naive contact reference.

Shared by the tracing scale test (tests/integration/test_door_tracing_scale.py) and the tracing
benchmark (bench/door_trace.py), so both run on the same data model.

* :func:`generate_day`: ``n`` passages of ``people`` people over one campus day, deterministic for
  a seed. Times cluster around the morning and evening peaks (with a lunch bump and a quiet
  night); each person's passages alternate in / out at a preferred gate (sometimes another);
  activity is skewed (most people pass a few times, a few pass twenty times or more); about 1 %
  of the people are visitors known by their ID number (``idc-...`` keys).
* :func:`store_passages`: every passage into ``door_passages`` through
  ``PassageModel.batch_write()`` (25 items a call), with ``gate_day`` and ``expires_at`` set as
  :class:`chalicelib.domain.door.DoorLog` sets them.
* :func:`brute_force_contacts`: the contacts of a person computed from the whole list, one
  passage at a time: no index, no query, nothing shared with the code under test but the
  definition (same gate, at most ``window`` apart, both ends inclusive).
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from chalicelib.db.door import PassageModel
from chalicelib.domain.door import Passage, gate_day, parse_utc, utc_iso

CAMPUS_TZ = ZoneInfo("Asia/Shanghai")
RETENTION = timedelta(days=180)  # DoorLog.retention
VISITOR_SHARE = 0.01

# (minute of the campus day, spread in minutes, share of the day's passages); the rest is spread
# evenly over the day (night shifts, deliveries, late returns).
PEAKS = (
    (7 * 60 + 45, 35, 0.32),  # morning: arrivals, residents leaving for the teaching buildings
    (12 * 60, 25, 0.12),  # lunch
    (13 * 60 + 50, 20, 0.06),  # back from lunch
    (17 * 60 + 45, 45, 0.30),  # evening: departures
    (21 * 60 + 30, 40, 0.10),  # back before the gates close
)
BACKGROUND = 1.0 - sum(share for _, _, share in PEAKS)
DAY_MS = 24 * 3600 * 1000


def person_keys(people: int, seed: int) -> list[tuple[str, str]]:
    """``(person, person_kind)`` for ``people`` people: members ``p00001``... and ~1 % visitors
    (``idc-`` + 24 hex digits, as :func:`chalicelib.domain.door.id_person` makes them)."""
    visitors = max(1, round(people * VISITOR_SHARE)) if people >= 2 else 0
    members = people - visitors
    keys = [(f"p{i:05d}", "member") for i in range(1, members + 1)]
    keys += [(f"idc-{hashlib.sha256(f'visitor:{seed}:{i}'.encode()).hexdigest()[:24]}", "visitor")
             for i in range(visitors)]
    return keys


def _minute_of_day(rng: random.Random) -> float:
    pick = rng.random()
    for minute, spread, share in PEAKS:
        if pick < share:
            return rng.gauss(minute, spread)
        pick -= share
    return rng.uniform(0, 24 * 60)


def generate_day(n: int, people: int, gates: list[str], day: date, seed: int) -> list[Passage]:
    """``n`` granted passages of ``people`` people at ``gates`` on campus day ``day`` (Asia/Shanghai),
    sorted by time; the same arguments give the same list."""
    if not gates:
        raise ValueError("at least one gate")
    rng = random.Random(seed)
    keys = person_keys(people, seed)
    # Skewed activity: a Pareto weight per person (capped), visitors lighter than members.
    weights = [min(rng.paretovariate(2.0), 8.0) * (0.4 if kind == "visitor" else 1.0) for _, kind in keys]
    counts = [0] * len(keys)
    for index in rng.choices(range(len(keys)), weights=weights, k=n):
        counts[index] += 1
    # Gates are not equally busy: the first is the main gate.
    gate_weights = [len(gates) - i for i in range(len(gates))]
    midnight = datetime.combine(day, time.min, tzinfo=CAMPUS_TZ)
    drafts: list[tuple[str, str, str, str, str, str, str | None]] = []
    for (person, kind), count in zip(keys, counts):
        if not count:
            continue
        home = rng.choices(gates, weights=gate_weights)[0]
        moments = sorted(min(DAY_MS - 1, max(0, int(_minute_of_day(rng) * 60_000) + rng.randrange(1000)))
                         for _ in range(count))
        direction = "in" if rng.random() < 0.75 else "out"  # commuters arrive first, residents leave first
        if kind == "visitor":
            credential_kind = "id_card"
            masked: str | None = f"{rng.randrange(110000, 660000)}********{rng.randrange(10000):04d}"
        elif rng.random() < 0.2:
            credential_kind, masked = "face", None
        else:
            credential_kind, masked = "campus_card", f"****{rng.randrange(10000):04d}"
        for ms in moments:
            gate = home if rng.random() < 0.7 else rng.choices(gates, weights=gate_weights)[0]
            at = utc_iso(midnight + timedelta(milliseconds=ms))
            drafts.append((at, person, kind, gate, direction, credential_kind, masked))
            direction = "out" if direction == "in" else "in"
    drafts.sort()
    return [Passage(event_id=f"gate-{day:%Y%m%d}-s{seed}-{i:06d}", person=person, person_kind=kind, gate=gate,
                    direction=direction, at=at, credential_kind=credential_kind, credential_masked=masked,
                    result="granted")
            for i, (at, person, kind, gate, direction, credential_kind, masked) in enumerate(drafts)]


def campus_day(passage: Passage, tz: tzinfo) -> date:
    return parse_utc(passage.at).astimezone(tz).date()


def store_passages(passages: Iterable[Passage], tz: tzinfo = CAMPUS_TZ) -> int:
    """Write ``passages`` into ``door_passages`` with batch writes (as DoorLog would store each one:
    ``gate_day`` of the campus day in ``tz``, kept 180 days); return how many were written."""
    written = 0
    with PassageModel.batch_write() as batch:
        for passage in passages:
            at = parse_utc(passage.at)
            batch.save(PassageModel(
                passage.event_id, person=passage.person, person_kind=passage.person_kind, gate=passage.gate,
                gate_day=gate_day(passage.gate, at.astimezone(tz).date()), direction=passage.direction,
                at=passage.at, credential_kind=passage.credential_kind,
                credential_masked=passage.credential_masked, result=passage.result, expires_at=at + RETENTION))
            written += 1
    return written


def brute_force_contacts(passages: Iterable[Passage], person: str, first: datetime, last: datetime,
                         window: timedelta) -> dict[str, list[tuple[str, str, str]]]:
    """Everyone else who passed a gate at most ``window`` before or after one of ``person``'s
    passages there (those with ``first <= at <= last``): person -> sorted ``(gate, mine, theirs)``.

    Naive on purpose: every passage of the list is compared with every passage of ``person``."""
    everything = [(p, parse_utc(p.at)) for p in passages]
    mine = [(p, at) for p, at in everything if p.person == person and first <= at <= last]
    found: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for other, theirs in everything:
        if other.person == person:
            continue
        for passage, at in mine:
            if passage.gate == other.gate and abs(at - theirs) <= window:
                found[other.person].append((other.gate, passage.at, other.at))
    return {who: sorted(pairs) for who, pairs in found.items()}
