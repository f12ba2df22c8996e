"""Contact tracing at campus scale: a generated day of 100,000 passages (16,000 people, 4 gates) in
moto, traced through the domain (``Tracing`` over ``DoorRepository``) and compared with a brute-force
reference computed over the whole list (tests/support/door.py).

The day is generated and stored once for the module (moto stores ~1,500 items/s in process: about a
minute), so the module runs in one moto account of its own: its ``aws`` fixture replaces the suite's
per-test one (tests/integration/conftest.py) with the same environment, for the module. The tests
only read. Each person is traced once (``traces``) and the tests look at that trace from their angle.

Who is traced:

* the busiest member whose trace reads at most 3,000 passages. moto answers a query by going through
  the whole table and copies out every item read (a few ms each), so the day's most active people
  (30-40 passages, ~20 stretches in the peaks, ~20,000 passages read) take a minute each: the
  benchmark (bench/door_trace.py) traces them. 3,000 passages are less than one 1 MB page, so the
  query count below is exact (no continuation pages);
* a visitor who came and left (two passages, an ``idc-`` key);
* ``p90001``, made by hand (HANDMADE): passes at 00:04 (its window starts on the previous campus
  day), at 10:00 (others exactly 10 minutes away, and 1 s / 1 ms further; denied swipes nearby)
  and at 23:57 (its window ends on the next campus day); also at 23:30 the day before, outside
  the traced period.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from moto import mock_aws

from chalicelib.db.door import DoorRepository
from chalicelib.domain.access import Actor
from chalicelib.domain.door import Contact, Passage, Tracing, utc_iso
from chalicelib.resources import TABLE_MODELS
from infra.local.atomic import make_dynamodb_writes_atomic
from infra.local.aws import create_tables
from tests.conftest import stage_environment
from tests.support.aws_calls import recorded_aws_calls
from tests.support.door import (
    brute_force_contacts,
    generate_day,
    GateTimes,
    granted,
    query_bound,
    reference_windows,
    store_passages,
)

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 30)
GATES = ["east", "west", "south", "north"]
PASSAGES, PEOPLE, SEED = 100_000, 16_000, 2020
WINDOW = timedelta(minutes=10)  # the API's default
FIRST = datetime.combine(DAY, time.min, TZ)  # the traced period: the campus day
LAST = FIRST + timedelta(days=1)
MAX_READS = 3_000  # under one 1 MB page: these items are 180-250 bytes (4,000+ a page)
SECURITY = Actor(userid="bw01", person_type="staff", department="bwc", roles=frozenset({"security"}))
NIGHT_OWL = "p90001"
NOBODY = "p99999"


def at(day: date, hour: int, minute: int, second: int = 0, millisecond: int = 0) -> str:
    """A campus-local moment as stored (UTC ISO)."""
    return utc_iso(datetime.combine(day, time(hour, minute, second, millisecond * 1000), TZ))


def passage(event: str, person: str, gate: str, direction: str, when: str, result: str = "granted") -> Passage:
    return Passage(event_id=f"x-{event}", person=person, person_kind="member", gate=gate, direction=direction,
                   at=when, credential_kind="campus_card", credential_masked="****0001", result=result)


BEFORE, AFTER = DAY - timedelta(days=1), DAY + timedelta(days=1)
HANDMADE = [
    # the night owl's own passages: one the day before (outside the period), three in it (and a
    # denied swipe, below)
    passage("owl-0", NIGHT_OWL, "south", "in", at(BEFORE, 23, 30)),
    passage("owl-1", NIGHT_OWL, "south", "out", at(DAY, 0, 4)),
    passage("owl-2", NIGHT_OWL, "north", "in", at(DAY, 10, 0)),
    passage("owl-3", NIGHT_OWL, "north", "out", at(DAY, 23, 57)),
    # near the day-before passage only: no contact (that passage is outside the period)
    passage("before-period", "p90009", "south", "in", at(BEFORE, 23, 31)),
    # across midnight: 5.5 minutes before owl-1 on the previous campus day, 8 after owl-3 on the next
    passage("previous-day", "p90002", "south", "in", at(BEFORE, 23, 58, 30)),
    passage("next-day", "p90003", "north", "in", at(AFTER, 0, 5)),
    # the window's ends around owl-2 (10:00:00.000 at north)
    passage("edge-after", "p90011", "north", "in", at(DAY, 10, 10)),  # exactly +10 min: counts
    passage("past-after-1s", "p90012", "north", "in", at(DAY, 10, 10, 1)),  # +10 min 1 s: does not
    passage("past-after-1ms", "p90015", "north", "in", at(DAY, 10, 10, 0, 1)),  # +10 min 1 ms: does not
    passage("edge-before", "p90013", "north", "out", at(DAY, 9, 50)),  # exactly -10 min: counts
    passage("past-before-1s", "p90014", "north", "out", at(DAY, 9, 49, 59)),  # -10 min 1 s: does not
    # denied swipes are not passages: the owl's at 10:02 brings nobody (p90017 is 12 min after 10:00),
    # and p90016's at 10:05 does not make them a contact
    passage("owl-denied", NIGHT_OWL, "north", "in", at(DAY, 10, 2), result="denied"),
    passage("near-denied-only", "p90017", "north", "in", at(DAY, 10, 12)),
    passage("denied", "p90016", "north", "in", at(DAY, 10, 5), result="denied"),
]
HANDMADE_PEOPLE = {p.person for p in HANDMADE}


# -- one moto account for the module, the day stored once -------------------------------------
@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    """Replaces the suite's per-test ``aws``: the same fake credentials, stage variables and tables,
    for the whole module."""
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("AWS_ENDPOINT_URL") or name in {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}:
                env.delenv(name)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.setenv(name, "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name, value in stage_environment("local").items():
            env.setenv(name, value)
        make_dynamodb_writes_atomic()
        with mock_aws():
            create_tables(TABLE_MODELS)
            yield


@pytest.fixture(scope="module")
def day(aws: None) -> list[Passage]:
    """Given a generated day of 100,000 passages over 16,000 people and 4 gates, plus the handmade
    ones, stored in moto."""
    passages = generate_day(PASSAGES, PEOPLE, GATES, DAY, SEED) + HANDMADE
    assert store_passages(passages, TZ) == len(passages)
    return passages


@dataclass
class RecordingAudit:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def record(self, *, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
        self.entries.append({"subject": subject, "actor": actor, "action": action, "detail": detail})


@dataclass
class Trace:
    person: str
    mine: list[Passage]
    contacts: list[Contact]
    calls: list[tuple[str, str]]
    items_read: int
    audit: list[dict[str, Any]]


def trace(person: str) -> Trace:
    store, audit = DoorRepository(), RecordingAudit()
    tracing = Tracing(store=store, audit=audit, tz=TZ)
    with recorded_aws_calls() as calls:
        mine, found = tracing.contacts(SECURITY, person, FIRST, LAST, WINDOW)
    return Trace(person, mine, found, list(calls), store.items_read, audit.entries)


def in_period(passages: list[Passage], person: str) -> list[Passage]:
    return sorted((p for p in passages if p.person == person and utc_iso(FIRST) <= p.at <= utc_iso(LAST)),
                  key=lambda p: p.at)


def chosen(passages: list[Passage]) -> dict[str, str]:
    """The people traced: role -> person key (deterministic for the seed)."""
    of: dict[str, list[Passage]] = defaultdict(list)
    for p in passages:
        of[p.person].append(p)
    gates = GateTimes(passages)

    def affordable(person: str) -> bool:
        return gates.within(reference_windows(of[person], WINDOW)) <= MAX_READS

    members = sorted((person for person in of if person.startswith("p") and person not in HANDMADE_PEOPLE),
                     key=lambda person: (-len(of[person]), person))
    busiest = next(person for person in members if affordable(person))
    visitor = min(person for person in of if person.startswith("idc-") and len(of[person]) == 2 and affordable(person))
    return {"busiest": busiest, "visitor": visitor, "night owl": NIGHT_OWL}


@pytest.fixture(scope="module")
def traces(day: list[Passage]) -> dict[str, Trace]:
    """When the security office traces each chosen person's contacts over the campus day."""
    return {role: trace(person) for role, person in chosen(day).items()}


def as_pairs(found: list[Contact]) -> dict[str, list[tuple[str, str, str]]]:
    return {c.person: sorted((o.gate, o.mine, o.theirs) for o in c.overlaps) for c in found}


# -- the tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["busiest", "visitor", "night owl"])
def test_contacts_at_scale_equal_the_brute_force_reference(day: list[Passage], traces: dict[str, Trace],
                                                           role: str) -> None:
    # Given the stored day and one of the chosen people
    result = traces[role]
    kinds = {p.person: p.person_kind for p in day}
    # When traced (the module's `traces`)
    # Then their passages are those of the period, in time order
    assert result.mine == in_period(day, result.person)
    assert result.mine, "every chosen person passed a gate that day"
    if role == "busiest":
        assert len(result.mine) >= 10  # the median member passes 5 times
    if role == "visitor":
        assert {p.person_kind for p in result.mine} == {"visitor"}
    # and the contacts, each with its exact overlaps, are the brute force's
    reference = brute_force_contacts(day, result.person, FIRST, LAST, WINDOW)
    assert reference, "a realistic day gives everyone someone nearby"
    assert as_pairs(result.contacts) == reference
    # each contact labelled with their kind, most overlaps first, then by person
    assert all(c.person_kind == kinds[c.person] for c in result.contacts)
    assert [c.person for c in result.contacts] == sorted(reference, key=lambda who: (-len(reference[who]), who))
    assert all(list(c.overlaps) == sorted(c.overlaps, key=lambda o: (o.mine, o.theirs)) for c in result.contacts)
    # and the trace is audited once, as the security officer's
    assert result.audit == [{"subject": f"person#{result.person}", "actor": "bw01", "action": "trace.contacts",
                             "detail": {"from": utc_iso(FIRST), "to": utc_iso(LAST), "window_minutes": 10}}]


def test_a_window_crossing_campus_midnight_reads_the_neighbouring_days(traces: dict[str, Trace]) -> None:
    # Given the night owl passing south at 00:04 and north at 23:57 (handmade, see HANDMADE)
    # When traced over the campus day (the module's `traces`)
    found = as_pairs(traces["night owl"].contacts)
    # Then people on the previous and the next campus day are contacts, with their overlaps
    assert found["p90002"] == [("south", at(DAY, 0, 4), at(BEFORE, 23, 58, 30))]
    assert found["p90003"] == [("north", at(DAY, 23, 57), at(AFTER, 0, 5))]
    # and a passage of the owl's outside the period brings no contact
    assert "p90009" not in found
    assert [p.event_id for p in traces["night owl"].mine] == ["x-owl-1", "x-owl-2", "x-owl-denied", "x-owl-3"]


def test_denied_swipes_are_not_passages(traces: dict[str, Trace]) -> None:
    # Given the owl's denied swipe at north 10:02, someone 10 minutes after it (12 after the owl's
    # 10:00), and someone else's denied swipe at 10:05
    # When traced (the module's `traces`)
    found = as_pairs(traces["night owl"].contacts)
    # Then neither makes a contact, though the owl's denied swipe is listed among its passages
    assert {"p90016", "p90017"}.isdisjoint(found)
    assert all(overlap.mine != at(DAY, 10, 2) for c in traces["night owl"].contacts for overlap in c.overlaps)


def test_the_window_is_inclusive_at_both_ends(traces: dict[str, Trace]) -> None:
    # Given others at north exactly 10 minutes before and after the owl's 10:00, and 1 s / 1 ms more
    # When traced with a 10-minute window (the module's `traces`)
    found = as_pairs(traces["night owl"].contacts)
    # Then exactly 10 minutes counts, on either side
    assert found["p90011"] == [("north", at(DAY, 10, 0), at(DAY, 10, 10))]
    assert found["p90013"] == [("north", at(DAY, 10, 0), at(DAY, 9, 50))]
    # and one second (or one millisecond) more does not
    assert {"p90012", "p90014", "p90015"}.isdisjoint(found)


def test_a_person_without_passages_has_no_contacts(day: list[Passage]) -> None:
    # Given a person who never passed a gate
    assert all(p.person != NOBODY for p in day)
    # When traced
    result = trace(NOBODY)
    # Then no passages, no contacts, and one query (theirs) was all it cost
    assert (result.mine, result.contacts) == ([], [])
    assert result.calls == [("dynamodb", "Query")]
    assert result.items_read == 0


@pytest.mark.parametrize("role", ["busiest", "visitor", "night owl"])
def test_the_cost_follows_the_persons_passages_not_the_day(day: list[Passage], traces: dict[str, Trace],
                                                           role: str) -> None:
    # Given a chosen person's trace over a day of 100,000 passages
    result = traces[role]
    stretches = reference_windows(granted(result.mine), WINDOW)
    # When counting what it cost (AWS calls recorded around the one contacts() call)
    operations = Counter(operation for _, operation in result.calls)
    # Then only queries: one for the person's passages, at most one per merged stretch and campus day
    assert set(operations) == {"Query"}, operations
    assert operations["Query"] <= query_bound(result.mine, WINDOW, TZ)
    if role == "night owl":  # its passages: 3 gates, 3 stretches, 2 of them over two campus days
        assert query_bound(result.mine, WINDOW, TZ) == 1 + 2 + 1 + 2
    assert "Scan" not in operations
    # and the passages read are exactly theirs plus everyone's inside those stretches: a sliver of the day
    assert result.items_read == len(result.mine) + GateTimes(day).within(stretches)
    assert result.items_read < len(day) // 30
