"""Contact-tracing benchmark: a generated campus day of 100,000 gate passages, ~20 people traced.

1. In this process, under ``moto.mock_aws`` (the tables from :data:`chalicelib.resources.TABLE_MODELS`,
   the ``local`` stage's variables, as the tests set them): generates a day with the tests' generator
   (tests/support/door.py: 16,000 people, 4 gates, morning and evening peaks, ~1 % visitors) and
   stores it with batch writes (timed, not the subject).
2. Traces the contacts of ~20 people of every activity (the most active members down to the least,
   visitors, someone who never passed) through the domain (``Tracing`` over ``DoorRepository``,
   a 10-minute window, the campus day) with every AWS call recorded. Per trace: the person's
   passages, the stretches they make (per gate, the union of +/- window), the queries those need
   (1 + stretch x campus day), the Query calls made (continuation pages of 1 MB included), the
   passages read (``DoorRepository.items_read``), contacts found, time.
3. Checks each trace against the brute force over the whole list (tests/support/door.py): the same
   contacts with the same overlaps, the person's passages, exactly the passages inside the stretches
   read, no more first-page queries than stretches x days, no Scan. Exits 1 on any mismatch.

The times are moto's: it answers a query by going through the whole table and copies every item it
returns, so they grow with the table and the items read; DynamoDB's grow with the items read only.
The figure that carries over is the passages read against the brute force's 100,000.

Writes the run (replacing the previous one) into the section "## Contact tracing (make bench-trace)"
of bench/results.md.

Knobs (environment): BENCH_PASSAGES (100000), BENCH_PEOPLE (16 % of the passages: 16000),
BENCH_TRACES (20), BENCH_WINDOW_MINUTES (10), BENCH_SEED (2020), BENCH_RESULTS (the results file).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from moto import mock_aws

from chalicelib.db.door import DoorRepository
from chalicelib.domain.access import Actor
from chalicelib.domain.door import Passage, Tracing, utc_iso
from chalicelib.resources import TABLE_MODELS
from infra.local.atomic import make_dynamodb_writes_atomic
from infra.local.aws import create_tables
from tests.conftest import stage_environment
from tests.support.aws_calls import _hooked  # the recorder under recorded_aws_calls(), with the parameters
from tests.support.door import GateTimes, brute_force_contacts, generate_day, query_bound, reference_windows, \
    store_passages

ROOT = Path(__file__).resolve().parents[1]
PASSAGES = int(os.environ.get("BENCH_PASSAGES", "100000"))
PEOPLE = int(os.environ.get("BENCH_PEOPLE", str(max(2, round(PASSAGES * 0.16)))))
TRACES = int(os.environ.get("BENCH_TRACES", "20"))
WINDOW = timedelta(minutes=int(os.environ.get("BENCH_WINDOW_MINUTES", "10")))
SEED = int(os.environ.get("BENCH_SEED", "2020"))
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results.md"))
TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 30)
GATES = ["east", "west", "south", "north"]
FIRST = datetime.combine(DAY, clock.min, TZ)
LAST = FIRST + timedelta(days=1)
NOBODY = "p99999"
SECURITY = Actor(userid="bw01", person_type="staff", department="bwc", roles=frozenset({"security"}))
SECTION = "## Contact tracing (make bench-trace)"


def local_aws_env() -> None:
    """What the integration tests' fixtures set: fake credentials, no endpoint, the local stage."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}:
            del os.environ[name]
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    os.environ.update(stage_environment("local"))


def commit() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class RecordingAudit:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def record(self, *, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
        self.entries.append({"subject": subject, "actor": actor, "action": action})


@contextmanager
def recorded_queries() -> Iterator[list[tuple[str, bool]]]:
    """``(operation, continued)`` of every DynamoDB call inside the block (``continued``: a next page)."""
    calls: list[tuple[str, bool]] = []
    with _hooked(lambda client, operation, params: calls.append((operation, "ExclusiveStartKey" in params))):
        yield calls


# -- whom to trace ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pick:
    person: str
    who: str  # e.g. "member #1 of 15840"


def picks(passages: list[Passage], count: int) -> list[Pick]:
    """People of every activity: the most active members down to the least (denser at the top,
    where the cost is), visitors of each visit length, and someone who never passed."""
    of: Counter[str] = Counter(p.person for p in passages)
    kinds = {p.person: p.person_kind for p in passages}
    members = sorted((p for p in of if kinds[p] == "member"), key=lambda p: (-of[p], p))
    visitors = sorted((p for p in of if kinds[p] == "visitor"), key=lambda p: (-of[p], p))
    chosen = [Pick(NOBODY, "nobody (no passage)")] if NOBODY not in of else []
    seen_counts: set[int] = set()
    for rank, person in enumerate(visitors, 1):
        if of[person] not in seen_counts and len(seen_counts) < 3:
            seen_counts.add(of[person])
            chosen.append(Pick(person, f"visitor #{rank} of {len(visitors)}"))
    slots = max(1, count - len(chosen))
    ranks = sorted({round((i / max(1, slots - 1)) ** 2 * (len(members) - 1)) for i in range(slots)})
    chosen += [Pick(members[r], f"member #{r + 1} of {len(members)}") for r in ranks]
    return chosen[:count] if len(chosen) > count else chosen


# -- one trace --------------------------------------------------------------------------------
@dataclass
class Row:
    pick: Pick
    passages: int
    stretches: int
    bound: int
    queries: int
    continued: int
    scans: int
    read: int
    expected_read: int
    contacts: int
    overlaps: int
    seconds: float
    brute_seconds: float
    examined: int
    problems: list[str]


def trace_one(pick: Pick, day: list[Passage], gates: GateTimes, store: DoorRepository, tracing: Tracing) -> Row:
    before = store.items_read
    with recorded_queries() as calls:
        started = time.perf_counter()
        mine, found = tracing.contacts(SECURITY, pick.person, FIRST, LAST, WINDOW)
        seconds = time.perf_counter() - started
    read = store.items_read - before
    started = time.perf_counter()
    reference = brute_force_contacts(day, pick.person, FIRST, LAST, WINDOW)
    brute_seconds = time.perf_counter() - started
    stretches = reference_windows(mine, WINDOW)
    bound = query_bound(mine, WINDOW, TZ)
    expected_read = len(mine) + gates.within(stretches)
    ops = Counter(operation for operation, _ in calls)
    continued = sum(1 for operation, more in calls if operation == "Query" and more)
    problems = []
    got = {c.person: sorted((o.gate, o.mine, o.theirs) for o in c.overlaps) for c in found}
    if got != reference:
        missing, extra = set(reference) - set(got), set(got) - set(reference)
        differ = [p for p in set(got) & set(reference) if got[p] != reference[p]]
        problems.append(f"contacts != brute force: {len(missing)} missing, {len(extra)} extra, {len(differ)} "
                        f"with other overlaps (e.g. {sorted(missing | extra | set(differ))[:3]})")
    mine_reference = sorted((p for p in day if p.person == pick.person and utc_iso(FIRST) <= p.at <= utc_iso(LAST)),
                            key=lambda p: p.at)
    if mine != mine_reference:
        problems.append(f"passages: {len(mine)} != {len(mine_reference)} in the list")
    if set(ops) - {"Query"}:
        problems.append(f"calls other than Query: {dict(ops)}")
    if ops["Query"] - continued > bound:
        problems.append(f"{ops['Query'] - continued} first-page queries > {bound} (stretches x days + 1)")
    if read != expected_read:
        problems.append(f"read {read} passages, the stretches hold {expected_read}")
    return Row(pick, len(mine), len(stretches), bound, ops["Query"], continued, ops["Scan"], read, expected_read,
               len(found), sum(len(c.overlaps) for c in found), seconds, brute_seconds, len(day), problems)


# -- report -----------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    lines = ["| person | passages | stretches | queries needed | Query calls | passages read | contacts (overlaps) "
             "| time | brute force examined | examined / read | check |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        calls = f"{r.queries}" + (f" ({r.continued} next page{'s' if r.continued > 1 else ''})" if r.continued else "")
        ratio = f"{r.examined / r.read:,.0f}x" if r.read else "-"
        check = "ok" if not r.problems else "FAIL: " + "; ".join(r.problems)
        lines.append(f"| {r.pick.who} | {r.passages} | {r.stretches} | {r.bound} | {calls} | {r.read:,} "
                     f"| {r.contacts:,} ({r.overlaps:,}) | {r.seconds:.1f} s | {r.examined:,} | {ratio} | {check} |")
    return "\n".join(lines)


def record(section: str) -> None:
    """Put ``section`` in place of the previous run's; a new one goes before the directory import's
    (whose rows are appended at the end of the file)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = text.find(SECTION)
    if start != -1:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("\n" + text[end + 1:] if end != -1 else "")
    else:
        anchor = text.find("## Directory import")
        text = (text[:anchor] + section + "\n" + text[anchor:] if anchor != -1
                else text.rstrip("\n") + "\n\n" + section)
    RESULTS.write_text(text.rstrip("\n") + "\n")


def main() -> int:
    local_aws_env()
    started = time.perf_counter()
    day = generate_day(PASSAGES, PEOPLE, GATES, DAY, SEED)
    generated = time.perf_counter() - started
    print(f"contact tracing: {len(day):,} passages of {len({p.person for p in day}):,} people at {len(GATES)} "
          f"gates on {DAY} (generated in {generated:.1f} s), window {WINDOW}", flush=True)
    make_dynamodb_writes_atomic()
    with mock_aws():
        create_tables(TABLE_MODELS)
        started = time.perf_counter()
        store_passages(day, TZ)
        stored = time.perf_counter() - started
        print(f"stored in {stored:.1f} s ({len(day) / stored:,.0f} items/s, BatchWriteItem into moto)", flush=True)
        gates = GateTimes(day)
        store, audit = DoorRepository(), RecordingAudit()
        tracing = Tracing(store=store, audit=audit, tz=TZ)
        rows = []
        for pick in picks(day, TRACES):
            row = trace_one(pick, day, gates, store, tracing)
            rows.append(row)
            print(f"  {pick.who:>24} {pick.person:<28} {row.passages:>3} passages, {row.stretches:>2} stretches, "
                  f"{row.queries:>3} Query ({row.continued} next pages), {row.read:>6,} read, {row.contacts:>5,} "
                  f"contacts, {row.seconds:5.1f} s; brute force {row.brute_seconds:.1f} s "
                  f"{'ok' if not row.problems else 'FAIL ' + '; '.join(row.problems)}", flush=True)
    if len(audit.entries) != len(rows):
        rows[-1].problems.append(f"{len(audit.entries)} audit entries for {len(rows)} traces")
    failed = [r for r in rows if r.problems]
    traced = [r for r in rows if r.passages]
    read = sum(r.read for r in rows)
    headline = (f"{len(rows)} traces: {sum(r.queries for r in rows)} Query calls, 0 Scan"
                if not any(r.scans for r in rows) else f"{len(rows)} traces: Scan seen")
    if not traced:
        traced = rows
    headline += (f"; {read:,} passages read in all against {len(day) * len(rows):,} examined by the brute force "
                 f"({len(day) * len(rows) / max(1, read):,.0f}x); per trace of someone who passed: median "
                 f"{statistics.median(r.read for r in traced):,.0f} read, max {max(r.read for r in traced):,}; "
                 f"median time {statistics.median(r.seconds for r in traced):.1f} s, max "
                 f"{max(r.seconds for r in traced):.1f} s (moto); "
                 + ("all equal to the brute force" if not failed else f"{len(failed)} FAIL"))
    command = f"BENCH_PASSAGES={PASSAGES} .venv/bin/python -m bench.door_trace"
    section = f"""{SECTION}

`{command}`. A generated campus day (tests/support/door.py, the tests' generator:
{len(day):,} passages of {len({p.person for p in day}):,} people, 4 gates, seed {SEED}) stored in moto in process
(`mock_aws`, `PassageModel.batch_write()`), then ~20 people of every activity traced through the domain
(`Tracing.contacts` over `DoorRepository`, the campus day, window {int(WINDOW.total_seconds() // 60)} minutes) and
each checked against the brute force over the whole list (same contacts, same overlaps). Stretches: per gate,
the union of +/- window around the person's passages; queries needed: 1 (their passages) + one per stretch
and campus day; Query calls: as recorded (a stretch holding more than 1 MB takes next pages); passages read:
`DoorRepository.items_read` (checked equal to the passages inside the stretches). Times are moto's, which
goes through the whole table for every query and copies each item out: they follow the table size and the
items read, not DynamoDB's latency; the ratio of passages examined by the brute force to passages read is
the figure that carries over. Shared 2-core machines make the times noisy.

Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.platform()} ({platform.machine()}, {os.cpu_count()} CPUs,
Python {platform.python_version()}), code {commit()}; generated in {generated:.1f} s, stored in {stored:.0f} s
({len(day) / stored:,.0f} items/s).

{headline}.

{table(rows)}
"""
    print()
    print(table(rows))
    print()
    print(headline)
    for row in failed:
        for problem in row.problems:
            print(f"FAIL {row.pick.who} ({row.pick.person}): {problem}", file=sys.stderr)
    record(section)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
