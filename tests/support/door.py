"""A generated campus day of gate passages, a fast way to store it, and a naive contact reference.

Shared by the tracing scale test (tests/integration/test_door_tracing_scale.py) and the tracing
benchmark (bench/door_trace.py), so both run on the same data model.

* :func:`generate_day`: ``n`` passages of ``people`` people over one campus day, deterministic for
  a seed. Times cluster around the morning and evening peaks (with a lunch bump and a quiet
  night); each person's passages alternate in / out at a preferred gate (sometimes another);
  members' activity is skewed (most pass a few times, a few twenty times or more); about 1 % of
  the people are visitors known by their ID number (``idc-...`` keys), who mostly come and go
  once, in office hours.
* :func:`store_passages`: every passage into ``door_passages`` through
  ``PassageModel.batch_write()`` (25 items a call), with ``gate_day`` and ``expires_at`` set as
  :class:`chalicelib.domain.door.DoorLog` sets them.
* :func:`brute_force_contacts`: the contacts of a person computed from the whole list, one
  passage at a time: no index, no query, nothing shared with the code under test but the
  definition (same gate, at most ``window`` apart, both ends inclusive).
* :func:`reference_windows`, :func:`query_bound`, :class:`GateTimes`: what a trace should cost
  (the stretches of time to read per gate, the queries they take, the passages inside them).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

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


def _visit_minute(rng: random.Random) -> float:
    return rng.uniform(8 * 60 + 30, 18 * 60)  # visitors come in office hours


def generate_day(n: int, people: int, gates: list[str], day: date, seed: int) -> list[Passage]:
    """``n`` granted passages of ``people`` people at ``gates`` on campus day ``day`` (Asia/Shanghai),
    sorted by time; the same arguments give the same list."""
    if not gates:
        raise ValueError("at least one gate")
    rng = random.Random(seed)
    keys = person_keys(people, seed)
    counts = [0] * len(keys)
    # Visitors come in and leave, some twice; an odd count: came the day before or stays overnight.
    budget = n
    for index, (_, kind) in enumerate(keys):
        if kind == "visitor" and budget:
            counts[index] = min(budget, rng.choices((1, 2, 3, 4, 6), weights=(5, 60, 10, 20, 5))[0])
            budget -= counts[index]
    # Members: skewed activity, a Pareto weight each (capped): most pass a few times, a few (guards,
    # couriers, people living by a gate) twenty times or more.
    members = [index for index, (_, kind) in enumerate(keys) if kind == "member"]
    weights = [min(rng.paretovariate(2.0), 8.0) for _ in members]
    if members:
        for index in rng.choices(members, weights=weights, k=budget):
            counts[index] += 1
    # Gates are not equally busy: the first is the main gate.
    gate_weights = [len(gates) - i for i in range(len(gates))]
    midnight = datetime.combine(day, time.min, tzinfo=CAMPUS_TZ)
    drafts: list[tuple[str, str, str, str, str, str, str | None]] = []
    for (person, kind), count in zip(keys, counts):
        if not count:
            continue
        home = rng.choices(gates, weights=gate_weights)[0]
        minute_of_day = _visit_minute if kind == "visitor" else _minute_of_day
        moments = sorted(min(DAY_MS - 1, max(0, int(minute_of_day(rng) * 60_000) + rng.randrange(1000)))
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


def store_passages(passages: Iterable[Passage], tz: tzinfo = CAMPUS_TZ) -> int:
    """Write ``passages`` into ``door_passages`` as DoorLog would store each one (``gate_day`` of
    the campus day in ``tz``, kept 180 days); return how many were written.

    The items go straight into moto's in-process backend (the tests and the benchmark run under
    ``mock_aws``): the same items a batch write stores, read back through the same queries, without
    serialising 4,000 batch requests (about 8x faster for a day of 100,000 passages).
    """
    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][boto3.session.Session().region_name]
    table = PassageModel.Meta.table_name
    written = 0
    for passage in passages:
        at = parse_utc(passage.at)
        item = PassageModel(
            passage.event_id, person=passage.person, person_kind=passage.person_kind, gate=passage.gate,
            gate_day=gate_day(passage.gate, at.astimezone(tz).date()), direction=passage.direction,
            at=passage.at, credential_kind=passage.credential_kind,
            credential_masked=passage.credential_masked, result=passage.result, expires_at=at + RETENTION)
        backend.put_item(table, item.serialize())
        written += 1
    return written


def brute_force_contacts(passages: Iterable[Passage], person: str, first: datetime, last: datetime,
                         window: timedelta) -> dict[str, list[tuple[str, str, str]]]:
    """Everyone else who passed a gate at most ``window`` before or after one of ``person``'s
    passages there (those with ``first <= at <= last``): person -> sorted ``(gate, mine, theirs)``.
    Only passages that went through count, theirs and mine: a denied swipe is not a passage.

    Naive on purpose: every passage of the list is compared with every passage of ``person``."""
    everything = [(p, parse_utc(p.at)) for p in passages if p.result == "granted"]
    mine = [(p, at) for p, at in everything if p.person == person and first <= at <= last]
    found: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for other, theirs in everything:
        if other.person == person:
            continue
        for passage, at in mine:
            if passage.gate == other.gate and abs(at - theirs) <= window:
                found[other.person].append((other.gate, passage.at, other.at))
    return {who: sorted(pairs) for who, pairs in found.items()}


def reference_windows(passages: Iterable[Passage], window: timedelta) -> list[tuple[str, datetime, datetime]]:
    """``(gate, start, end)``: per gate, the union of ``[at - window, at + window]`` over ``passages``
    (the stretches a tracer has to read at least once), sorted."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for passage in passages:
        times[passage.gate].append(parse_utc(passage.at))
    stretches: list[tuple[str, datetime, datetime]] = []
    for gate in sorted(times):
        merged: list[list[datetime]] = []
        for moment in sorted(times[gate]):
            if merged and moment - window <= merged[-1][1]:
                merged[-1][1] = moment + window
            else:
                merged.append([moment - window, moment + window])
        stretches += [(gate, start, end) for start, end in merged]
    return stretches


def days_touched(start: datetime, end: datetime, tz: tzinfo = CAMPUS_TZ) -> int:
    """How many campus days ``[start, end]`` overlaps (the ``by_gate`` partitions it spans)."""
    return (end.astimezone(tz).date() - start.astimezone(tz).date()).days + 1


def query_bound(mine: Iterable[Passage], window: timedelta, tz: tzinfo = CAMPUS_TZ) -> int:
    """Queries a contact trace needs: one for the person's passages, one per stretch (around the
    passages that went through) and campus day."""
    return 1 + sum(days_touched(start, end, tz) for _, start, end in reference_windows(granted(mine), window))


def granted(passages: Iterable[Passage]) -> list[Passage]:
    """The passages that went through (the ones tracing looks around)."""
    return [p for p in passages if p.result == "granted"]


class GateTimes:
    """The passages of a list per gate, sorted by time: how many lie inside given stretches (what a
    trace has to read), without going through the list each time."""

    def __init__(self, passages: Iterable[Passage]) -> None:
        self._times: dict[str, list[str]] = defaultdict(list)
        for passage in passages:
            self._times[passage.gate].append(passage.at)
        for times in self._times.values():
            times.sort()

    def within(self, stretches: Iterable[tuple[str, datetime, datetime]]) -> int:
        """Passages inside one of the ``(gate, start, end)`` stretches, both ends included."""
        count = 0
        for gate, start, end in stretches:
            times = self._times.get(gate, [])
            count += bisect.bisect_right(times, utc_iso(end)) - bisect.bisect_left(times, utc_iso(start))
        return count
