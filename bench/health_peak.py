"""Morning-peak benchmark of the daily health report: 16,022 generated people plus the demo cast.

1. Starts the local stack (moto, API, pollers) in a subprocess with ``DEMO_PEOPLE`` generated people.
2. Logs everyone active in (``POST /auth/dev-login``) and gives consent: the set-up, not measured
   (sessions last two hours and consent is given once per text version, so a real morning peak is
   mostly filings). Then the peak: every person files today's report from a thread pool, ~2 %
   abnormal, ~2 % re-sent once after the answer (a client retry: must be 200 ``unchanged``) and a
   few sent twice at the same instant (one 201, one 200 ``unchanged``). Only the filing POSTs are
   timed (client wall time): p50, p95, p99, throughput.
3. Verifies against the moto server (a Scan, here only): exactly one report per filer for the day,
   version 1, no report lost, the abnormal flag as filed; that the day's counter rows hold that
   recount unit by unit (numbers, the people behind them, the version counted); and that
   ``GET /health/overview`` equals it: campus-wide as ``doc01`` and ``leader01`` (per department
   and class; a leader's hidden small-group abnormal counts are skipped) and for 20 classes.
4. In this process, under ``mock_aws``: a sample of filings through ``chalice.test.Client`` with
   every AWS call recorded: calls per normal / abnormal / retried filing, and no Scan anywhere.
5. In the same backend: the median handler time of a normal filing against the median time of a
   bare PynamoDB ``Model.save()`` of a comparable item (target <= 2x: reported, not enforced).

Writes a row to bench/results.md; exits 1 when a correctness check fails (an unexpected answer, a
duplicate or lost report, counters or an overview != recount or failing, a Scan, a normal filing
costing more than 3 AWS calls). A failed run's stack log is kept in .local/bench-health-stack.log.

Knobs (environment): BENCH_PEOPLE (16022), BENCH_WORKERS (8), BENCH_SAMPLE (200 in-process
filings), BENCH_RESULTS (the results file), BENCH_SEED, BENCH_KEEPALIVE (1: reuse connections).

Whatever the hour, the run sees the same app: the stack (and the in-process sample) get
``HEALTH_REPORT_CUTOFF=""`` (open until midnight, as the e2e suite does; the default closes at 20:00)
and the health jobs' times (reminders, counselors' digest, the evening summary with its recount) set
two hours before the start, so none of them acts during the run: no reminder flood in the peak, and
no recount repairing the counters before they are checked. A run that crosses campus midnight fails
its checks (the filings would span two days): run it again.
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import requests

from bench.common import local_stage_env, quiet_stdout
from infra.local.demo import CAST, generate_population
from tests.support.health import NORMAL  # the answers the tests file, as any phone would

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = int(os.environ.get("BENCH_PEOPLE", "16022"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "8"))
SAMPLE = int(os.environ.get("BENCH_SAMPLE", "200"))
SEED = int(os.environ.get("BENCH_SEED", "2020"))
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results.md"))
ABNORMAL_SHARE = 0.02
RETRY_SHARE = 0.02
MAX_RACES = 20
CLASS_SAMPLE = 20  # per-class overviews checked after the peak
CUTOFF = ""  # open until midnight, whatever the hour of the run
TABLE_PREFIX = "campus-local-"
STARTUP_TIMEOUT = 900  # 16,022 people are loaded before the stack says it is ready
REQUEST_TIMEOUT = 60
BARE_PUT_RATIO_TARGET = 2.0

ABNORMAL: dict[str, Any] = {**NORMAL, "temperature": 37.8, "symptoms": ["fever"]}


def health_env() -> dict[str, str]:
    """The health settings the run needs (see the module's docstring)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    zone = ZoneInfo(config.get("environment_variables", {}).get("CAMPUS_TIMEZONE", "Asia/Shanghai"))
    past = (datetime.now(zone) - timedelta(hours=2)).strftime("%H:%M")
    return {"HEALTH_REPORT_CUTOFF": CUTOFF, "HEALTH_REMINDER_TIMES": past, "HEALTH_MISSING_DIGEST_TIME": past,
            "HEALTH_SUMMARY_TIME": past}


def commit() -> str:
    """The code measured: BENCH_COMMIT, or ``git describe --always --dirty`` of the project."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- who files --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filer:
    userid: str
    person_type: str
    department: str
    class_id: str | None  # students only (the counters' unit)
    abnormal: bool = False
    retry: bool = False  # re-sent once after the first answer
    race: bool = False  # sent twice at the same instant


def filers(size: int, seed: int = SEED) -> list[Filer]:
    """Everyone active of the demo campus (cast + ``size`` generated), with their part in the peak."""
    people = [(u, t, d, c) for u, _, t, d, c, *_ in CAST]
    people += [(p.userid, p.person_type, p.department, p.class_id) for p in generate_population(size)[0]
               if p.status == "active"]
    rng = random.Random(seed)
    order = list(range(len(people)))
    rng.shuffle(order)
    abnormal = set(order[: max(1, round(len(people) * ABNORMAL_SHARE))])
    rng.shuffle(order)
    retries = max(1, round(len(people) * RETRY_SHARE))
    races = max(1, min(MAX_RACES, len(people) // 20))
    retry, race = set(order[:retries]), set(order[retries:retries + races])
    return [Filer(userid=u, person_type=t, department=d, class_id=c if t == "student" else None,
                  abnormal=i in abnormal, retry=i in retry, race=i in race)
            for i, (u, t, d, c) in enumerate(people)]


def answers_of(filer: Filer) -> dict[str, Any]:
    return ABNORMAL if filer.abnormal else NORMAL


# -- the stack --------------------------------------------------------------------------------
@dataclass
class Stack:
    process: subprocess.Popen
    url: str
    env: dict[str, str]
    log: Path
    started_in: float

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> tuple[float, int | None]:
        """Ctrl-C the stack's process group (SIGKILL after 30 s); return (seconds, exit code)."""
        started = time.monotonic()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return time.monotonic() - started, self.process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_stack(work: Path, people: int) -> Stack:
    port = free_port()
    state_file = work / "stack.json"
    log = work / "stack.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(PYTHONUNBUFFERED="1", DEMO_PEOPLE=str(people), LOCAL_STACK_STATE=str(state_file), **health_env())
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local", "run", "--port", str(port), "--demo-people", str(people),
             "--state-file", str(state_file)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the local stack exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if state_file.exists() and requests.get(f"{url}/healthz", timeout=2).status_code:
                state = json.loads(state_file.read_text())
                return Stack(process, url, state["env"], log, time.monotonic() - started)
        except (requests.ConnectionError, ValueError):
            pass
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    raise RuntimeError(f"the local stack did not start within {STARTUP_TIMEOUT}s")


# -- the peak over HTTP -----------------------------------------------------------------------
KEEPALIVE = os.environ.get("BENCH_KEEPALIVE", "") == "1"
_local = threading.local()


def session() -> Any:
    """A fresh connection per request (each filing comes from another phone), or with
    BENCH_KEEPALIVE=1 one kept-alive connection per client thread. Kept-alive connections to the
    local API server wait ~40 ms per response (headers and body leave in two segments without
    TCP_NODELAY, and the second waits for the client's delayed ACK): an artefact of the local
    server, not of the app, so it is off by default."""
    if not KEEPALIVE:
        return requests
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def prepare(url: str, filer: Filer) -> str:
    """Log in and consent; return the session token."""
    http = session()
    answer = http.post(f"{url}/auth/dev-login", json={"userid": filer.userid}, timeout=REQUEST_TIMEOUT)
    answer.raise_for_status()
    token = answer.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    text = http.get(f"{url}/health/consent", headers=auth, timeout=REQUEST_TIMEOUT)
    text.raise_for_status()
    given = http.post(f"{url}/health/consent", headers=auth, json={"version": text.json()["version"], "agree": True},
                      timeout=REQUEST_TIMEOUT)
    if given.status_code != 200:
        raise RuntimeError(f"consent of {filer.userid}: HTTP {given.status_code} {given.text[:200]}")
    return token


@dataclass
class Post:
    """One filing POST as the client saw it."""

    userid: str
    kind: str  # first | retry | race
    seconds: float
    status: int | None
    body: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def post_report(url: str, token: str, filer: Filer, kind: str, http: Any = None) -> Post:
    http = http or session()
    started = time.perf_counter()
    try:
        answer = http.post(f"{url}/health/reports", json=answers_of(filer), timeout=REQUEST_TIMEOUT,
                           headers={"Authorization": f"Bearer {token}"})
        seconds = time.perf_counter() - started
    except requests.RequestException as exc:
        return Post(filer.userid, kind, time.perf_counter() - started, None, error=type(exc).__name__)
    try:
        body = answer.json()
    except ValueError:
        body = {"raw": answer.text[:200]}
    return Post(filer.userid, kind, seconds, answer.status_code, body)


def file_one(url: str, token: str, filer: Filer) -> list[Post]:
    """A person's part in the peak: one filing; a retry after it; or two at once."""
    if filer.race:
        barrier = threading.Barrier(2)
        results: list[Post] = []

        def racer() -> None:
            barrier.wait()
            results.append(post_report(url, token, filer, "race", requests))

        other = threading.Thread(target=racer)
        other.start()
        barrier.wait()
        results.append(post_report(url, token, filer, "race", requests))
        other.join()
        return results
    posts = [post_report(url, token, filer, "first")]
    if filer.retry:
        posts.append(post_report(url, token, filer, "retry"))
    return posts


def run_pool(work: Callable[[Filer], Any], people: list[Filer], label: str) -> tuple[list[Any], float]:
    """``work`` over everyone from ``WORKERS`` threads; (results in order, wall seconds)."""
    done = 0
    lock = threading.Lock()
    step = max(1, len(people) // 10)

    def counted(filer: Filer) -> Any:
        nonlocal done
        result = work(filer)
        with lock:
            done += 1
            if done % step == 0:
                print(f"  {label}: {done}/{len(people)}", flush=True)
        return result

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(counted, people))
    return results, time.perf_counter() - started


def check_answers(people: list[Filer], posts: list[Post]) -> tuple[list[str], str | None]:
    """Every answer as expected; returns (problems, the campus day the answers name)."""
    problems: list[str] = []
    by_user: dict[str, list[Post]] = defaultdict(list)
    for post in posts:
        by_user[post.userid].append(post)
    days = Counter(p.body.get("date") for p in posts if p.status in (200, 201))
    for filer in people:
        mine = by_user[filer.userid]
        failed = [p for p in mine if p.error or p.status not in (200, 201)]
        for post in failed:
            problems.append(f"{filer.userid} {post.kind}: {post.error or post.status} {json.dumps(post.body)[:160]}")
        if failed:
            continue
        outcomes = sorted((p.status, p.body.get("outcome")) for p in mine)
        if filer.race:
            wanted = [(200, "unchanged"), (201, "created")]
        else:
            wanted = [(201, "created")] + ([(200, "unchanged")] if filer.retry else [])
        if outcomes != sorted(wanted):
            problems.append(f"{filer.userid} ({'race' if filer.race else 'retry' if filer.retry else 'once'}): "
                            f"answers {outcomes}, expected {sorted(wanted)}")
        for post in mine:
            if post.body.get("version") != 1 or post.body.get("abnormal") is not filer.abnormal:
                problems.append(f"{filer.userid} {post.kind}: version {post.body.get('version')}, "
                                f"abnormal {post.body.get('abnormal')} (filed abnormal={filer.abnormal})")
    if len(days) != 1:
        problems.append(f"the answers name {len(days)} days {dict(days)} (the run crossed campus midnight?)")
    return problems, (next(iter(days)) if days else None)


# -- verification against the moto server -------------------------------------------------------
def stored_reports(env: dict[str, str], day: str) -> tuple[list[dict[str, Any]], int]:
    """The day's items of the reports table (Scan: the benchmark's check only), and other days' count."""
    items, other_days = [], 0
    pages = moto_dynamodb(env).get_paginator("scan").paginate(
        TableName=f"{TABLE_PREFIX}health_reports",
        ProjectionExpression="userid, #d, version, abnormal, department, class_id, person_type, history",
        ExpressionAttributeNames={"#d": "day"},
    )
    for page in pages:
        for raw in page["Items"]:
            item = {
                "userid": raw["userid"]["S"], "day": raw["day"]["S"], "version": int(raw["version"]["N"]),
                "abnormal": raw.get("abnormal", {}).get("BOOL"), "department": raw["department"]["S"],
                "class_id": raw.get("class_id", {}).get("S"), "person_type": raw["person_type"]["S"],
                "history": len(raw.get("history", {}).get("L", [])),
            }
            if item["day"] == day:
                items.append(item)
            else:
                other_days += 1
    return items, other_days


def check_store(people: list[Filer], items: list[dict[str, Any]], other_days: int) -> tuple[list[str], dict]:
    problems: list[str] = []
    per_user = Counter(i["userid"] for i in items)
    expected = {f.userid: f for f in people}
    duplicates = {u: n for u, n in per_user.items() if n > 1}
    lost = sorted(set(expected) - set(per_user))
    strangers = sorted(set(per_user) - set(expected))
    not_v1 = [i["userid"] for i in items if i["version"] != 1 or i["history"]]
    wrong_flag = [i["userid"] for i in items if i["userid"] in expected
                  and i["abnormal"] is not expected[i["userid"]].abnormal]
    wrong_unit = [i["userid"] for i in items if i["userid"] in expected and
                  (i["department"], i["class_id"], i["person_type"]) !=
                  (expected[i["userid"]].department, expected[i["userid"]].class_id, expected[i["userid"]].person_type)]
    for name, found in (("duplicates", duplicates), ("lost", lost), ("not filed by the benchmark", strangers),
                        ("not version 1 / with history", not_v1), ("abnormal flag not as filed", wrong_flag),
                        ("unit not the person's", wrong_unit)):
        if found:
            problems.append(f"{len(found)} {name}: {list(found)[:10]}")
    if other_days:
        problems.append(f"{other_days} reports of another day")
    figures = {"items": len(items), "duplicates": len(duplicates), "lost": len(lost),
               "abnormal": sum(1 for i in items if i["abnormal"]), "not_v1": len(not_v1)}
    return problems, figures


def recount(items: list[dict[str, Any]]) -> dict[str, Any]:
    total = {"reported": 0, "abnormal": 0}
    departments: dict[str, dict[str, int]] = defaultdict(lambda: {"reported": 0, "abnormal": 0})
    classes: dict[str, dict[str, int]] = defaultdict(lambda: {"reported": 0, "abnormal": 0})
    for item in items:
        rows = [total, departments[item["department"]]]
        if item["class_id"]:
            rows.append(classes[item["class_id"]])
        for row in rows:
            row["reported"] += 1
            row["abnormal"] += int(bool(item["abnormal"]))
    return {"total": total, "departments": dict(departments), "classes": dict(classes)}


def moto_dynamodb(env: dict[str, str]) -> Any:
    return boto3.client(
        "dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
    )


def unit_key(item: dict[str, Any]) -> str:
    """The counters' unit of a stored report (``chalicelib.domain.health.Unit.key``)."""
    return f"{item['department']}#{item['class_id'] or '-'}#{item['person_type']}"


def check_counters(env: dict[str, str], day: str, items: list[dict[str, Any]]) -> tuple[list[str], dict[str, int]]:
    """The day's counter rows (``health_days``, one Query of the day's partition) against the
    stored reports, unit by unit: the numbers, the sets of people behind them, the version counted."""
    want: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for item in items:
        people, abnormal = want[unit_key(item)]
        people.add(item["userid"])
        if item["abnormal"]:
            abnormal.add(item["userid"])
    rows: dict[str, dict[str, Any]] = {}
    pages = moto_dynamodb(env).get_paginator("query").paginate(
        TableName=f"{TABLE_PREFIX}health_days", KeyConditionExpression="#d = :d",
        ExpressionAttributeNames={"#d": "day"}, ExpressionAttributeValues={":d": {"S": day}}, ConsistentRead=True)
    for page in pages:
        for raw in page["Items"]:
            if not raw["unit"]["S"].startswith("~"):
                rows[raw["unit"]["S"]] = raw
    problems = []
    totals = {"units": 0, "reported": 0, "abnormal": 0}
    for unit in sorted(set(want) | set(rows)):
        people, abnormal = want.get(unit, (set(), set()))
        raw = rows.get(unit, {})
        reported = int(raw.get("reported", {}).get("N", 0))
        flagged = int(raw.get("abnormal", {}).get("N", 0))
        reporters = set(raw.get("reporters", {}).get("SS", []))
        abnormal_ids = set(raw.get("abnormal_ids", {}).get("SS", []))
        versions = {k[2:]: int(v["N"]) for k, v in raw.items() if k.startswith("v#")}
        totals["units"] += 1
        totals["reported"] += reported
        totals["abnormal"] += flagged
        if (reported, flagged) != (len(people), len(abnormal)):
            problems.append(f"counters {unit}: reported {reported}, abnormal {flagged}; stored "
                            f"{len(people)}, {len(abnormal)} abnormal")
        if reporters != people or abnormal_ids != abnormal:
            problems.append(f"counters {unit}: people counted differ from the stored reports "
                            f"(missing {sorted(people - reporters)[:5]}, extra {sorted(reporters - people)[:5]}, "
                            f"abnormal missing {sorted(abnormal - abnormal_ids)[:5]}, "
                            f"extra {sorted(abnormal_ids - abnormal)[:5]})")
        if versions and (set(versions) != reporters or set(versions.values()) != {1}):
            problems.append(f"counters {unit}: versions counted {dict(list(versions.items())[:5])}...")
    return problems[:30], totals


def check_overview(overview: dict[str, Any], counted: dict[str, Any], expected_people: int, who: str,
                   hidden: list[str] | None = None) -> list[str]:
    """Problems of ``overview`` against the recount. An abnormal count shown as null (a group too
    small for a figures-only caller, by design) is not compared; its name goes to ``hidden``."""
    problems = []
    total = overview["total"]
    for key in ("reported", "abnormal"):
        if total[key] != counted["total"][key]:
            problems.append(f"{who}: total.{key} {total[key]} != {counted['total'][key]} stored")
    if total["expected"] != expected_people:
        problems.append(f"{who}: total.expected {total['expected']} != {expected_people} active people")
    for part in ("departments", "classes"):
        shown = overview[part]
        for name in sorted(set(shown) | set(counted[part])):
            got = {k: shown.get(name, {}).get(k, 0) for k in ("reported", "abnormal")}
            want = dict(counted[part].get(name, {"reported": 0, "abnormal": 0}))
            if name in shown and shown[name].get("abnormal", 0) is None:
                if hidden is not None:
                    hidden.append(f"{part}:{name}")
                got.pop("abnormal")
                want.pop("abnormal")
            if got != want:
                problems.append(f"{who}: {part}[{name}] {got} != recount {want}")
    return problems[:30]


# -- in-process: AWS calls per filing, and the handler against a bare put -----------------------
@dataclass
class InProcess:
    filings: int = 0
    normal_ops: Counter = field(default_factory=Counter)  # tuple of operations -> filings
    abnormal_ops: Counter = field(default_factory=Counter)
    retry_ops: Counter = field(default_factory=Counter)
    scans: list[str] = field(default_factory=list)
    all_ops: Counter = field(default_factory=Counter)
    handler_seconds: list[float] = field(default_factory=list)
    bare_seconds: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def handler_median(self) -> float:
        return statistics.median(self.handler_seconds)

    @property
    def bare_median(self) -> float:
        return statistics.median(self.bare_seconds)


def in_process(sample: int) -> InProcess:
    """``sample`` filings through the test client under moto, every AWS call recorded."""
    from chalice.test import Client
    from moto import mock_aws
    from pynamodb.attributes import BooleanAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
    from pynamodb.models import Model

    from chalicelib.db.base import TableMeta
    from chalicelib.db.directory import DirectoryRepository
    from chalicelib.db.health import HealthReportModel
    from chalicelib.resources import QUEUES, TABLE_MODELS
    from infra.local.atomic import make_dynamodb_writes_atomic
    from infra.local.aws import bucket_names, create_buckets, create_queues, create_tables
    from infra.local.demo import load_demo_campus
    from tests.support.aws_calls import recorded_aws_calls
    from tests.support.health import consent
    from tests.support.identity import call, login

    class BareReport(Model):
        """A throwaway table: the reports table's keys, no index, no condition."""

        class Meta(TableMeta):
            table_name = "bench-bare-put"
            region = "us-east-1"

        userid = UnicodeAttribute(hash_key=True)
        day = UnicodeAttribute(range_key=True)
        version = NumberAttribute()
        sealed = UnicodeAttribute()
        abnormal = BooleanAttribute()
        history = ListAttribute(of=UnicodeAttribute, default=list)
        filed_at = UnicodeAttribute()
        updated_at = UnicodeAttribute()
        expires_at = NumberAttribute()
        department = UnicodeAttribute()
        class_id = UnicodeAttribute(null=True)
        person_type = UnicodeAttribute()
        unit_day = UnicodeAttribute()

    result = InProcess()
    with local_stage_env(**health_env()), quiet_stdout():
        make_dynamodb_writes_atomic()
        with mock_aws():
            create_tables(TABLE_MODELS)
            create_buckets(boto3.client("s3"), bucket_names())
            create_queues(boto3.client("sqs"), QUEUES)
            BareReport.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
            load_demo_campus(DirectoryRepository(), size=sample)
            people = filers(sample, seed=SEED + 1)
            # In the sample, one in ten is abnormal and one in ten retried (enough of each to count).
            rng = random.Random(SEED + 2)
            people = [Filer(f.userid, f.person_type, f.department, f.class_id, abnormal=rng.random() < 0.1,
                            retry=rng.random() < 0.1) for f in people]
            from app import app

            with Client(app, stage_name="local", project_dir=str(ROOT)) as client:
                with recorded_aws_calls() as calls:
                    tokens = {}
                    for filer in people:
                        tokens[filer.userid] = login(client, filer.userid)
                        consent(client, tokens[filer.userid])
                    # Warm up (imports, the queue URL, connections) with the cast, then measure.
                    warm = [f for f in people if f.userid in {"t001", "t002", "w001"}]
                    timed = [f for f in people if f not in warm]
                    body = {}
                    for filer in warm + timed:
                        start = len(calls)
                        began = time.perf_counter()
                        status, body = call(client, "POST", "/health/reports", tokens[filer.userid],
                                            answers_of(filer))
                        seconds = time.perf_counter() - began
                        ops = tuple(op for _, op in calls[start:])
                        result.filings += 1
                        if status != 201 or body.get("abnormal") is not filer.abnormal:
                            result.problems.append(f"in-process {filer.userid}: {status} {str(body)[:160]}")
                        if filer in warm:
                            continue
                        (result.abnormal_ops if filer.abnormal else result.normal_ops)[ops] += 1
                        if not filer.abnormal:
                            result.handler_seconds.append(seconds)
                            # a bare put of the same item, right after (same moment, same backend)
                            stored = HealthReportModel.get(filer.userid, body["date"])
                            bare = BareReport(
                                userid=f"bare-{filer.userid}", day=stored.day, version=1, sealed=stored.sealed,
                                abnormal=stored.abnormal, history=[], filed_at=stored.filed_at,
                                updated_at=stored.updated_at, expires_at=int(stored.expires_at.timestamp()),
                                department=stored.department, class_id=stored.class_id,
                                person_type=stored.person_type, unit_day=stored.unit_day)
                            began = time.perf_counter()
                            bare.save()
                            result.bare_seconds.append(time.perf_counter() - began)
                        if filer.retry:
                            start = len(calls)
                            status, again = call(client, "POST", "/health/reports", tokens[filer.userid],
                                                 answers_of(filer))
                            result.retry_ops[tuple(op for _, op in calls[start:])] += 1
                            if (status, again.get("outcome")) != (200, "unchanged"):
                                result.problems.append(f"in-process retry {filer.userid}: {status} {str(again)[:160]}")
                    for who in ("doc01", "leader01"):
                        status, overview = call(client, "GET", "/health/overview", tokens[who])
                        if status != 200 or overview["total"]["reported"] != len(people):
                            result.problems.append(f"in-process overview as {who}: {status} {str(overview)[:160]}")
                result.all_ops = Counter(op for _, op in calls)
                result.scans = [f"{service}:{op}" for service, op in calls if op in {"Scan", "ParallelScan"}]
    return result


def keep_log(log: Path) -> None:
    """Keep the stack's log of a failed run (the run's directory goes): .local/ is git-ignored."""
    target = ROOT / ".local" / "bench-health-stack.log"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(log.read_bytes())
    print(f"the stack's log: {target}", file=sys.stderr)


def server_durations(log: Path) -> dict[str, list[float]]:
    """``duration_ms`` of each request the stack logged, by route (the app's own access line)."""
    found: dict[str, list[float]] = defaultdict(list)
    with log.open(errors="replace") as lines:
        for line in lines:
            if '"duration_ms"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            found[entry.get("route", "?")].append(float(entry["duration_ms"]) / 1000)
    return found


def health_jobs_acted(log: Path) -> list[dict[str, Any]]:
    """The health jobs' reports (reminders, summary) that did something during the run."""
    acted = []
    with log.open(errors="replace") as lines:
        for line in lines:
            if '"health reminders"' not in line and '"health summary"' not in line:
                continue
            try:
                job = json.loads(line).get("job", {})
            except ValueError:
                continue
            if job.get("slots") or job.get("recounted"):
                acted.append(job)
    return acted


# -- figures and the record ---------------------------------------------------------------------
def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, int(-(-share * len(ordered) // 1)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def describe_ops(found: Counter) -> str:
    if not found:
        return "none"
    parts = []
    for ops, n in found.most_common():
        parts.append(f"{len(ops)} ({', '.join(ops)}) x{n}")
    return "; ".join(parts)


SECTION = "## Health morning peak (make bench-health)"
HEADER = f"""{SECTION}

`make bench-health` (a quick run: `BENCH_PEOPLE=500 make bench-health`). Every active person of the demo
campus (cast + generated) logs in and consents (not timed), then files today's report from a pool of
threads over HTTP against the local stack, one connection per request (each filing is another phone):
~2 % abnormal, ~2 % re-sent once (must be 200 `unchanged`), a few sent twice at once (one 201, one 200).
Latency: client wall time of each `POST /health/reports`; "app": the same requests' `duration_ms` in the
stack's access log. The local stack is one Python process (API, moto, pollers) that saturates one core, so
the client's latency is mostly queueing (about workers / throughput). Checks, read back from moto: one
stored report per filer, version 1, abnormal as filed (a Scan, in the benchmark only); the day's counter
rows = that recount unit by unit (numbers and the people behind them); `GET /health/overview` = the
recount campus-wide (doc01, leader01) and for 20 classes (doc01). AWS calls per filing and no Scan: an
in-process sample through `chalice.test.Client` under `mock_aws`; ratio: its median handler time / the
median bare PynamoDB `save()` of the same item into a table without indexes (target <= 2x, not enforced).

| date | machine | people | filing POSTs | workers | p50 | p95 | p99 | throughput | AWS calls per filing (in-process) | handler / bare put | checks |
|---|---|---|---|---|---|---|---|---|---|---|---|
"""


def record(line: str) -> None:
    """Add ``line`` to this benchmark's table; the section goes before the directory import's,
    which appends its rows at the end of the file."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    if SECTION not in text:
        anchor = text.find("## Directory import")
        if anchor == -1:
            text = text.rstrip("\n") + "\n\n" + HEADER
        else:
            text = text[:anchor] + HEADER + "\n" + text[anchor:]
    lines = text.split("\n")
    at = lines.index(SECTION) + 1
    while at < len(lines) and not lines[at].startswith("|"):
        at += 1
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines.insert(at, line)
    RESULTS.write_text("\n".join(lines).rstrip("\n") + "\n")


def main() -> int:
    people = filers(PEOPLE)
    failed: dict[str, list[str]] = defaultdict(list)  # check -> problems
    print(f"health morning peak: {len(people)} filers ({PEOPLE} generated + {len(CAST)} cast), {WORKERS} workers; "
          f"{sum(f.abnormal for f in people)} abnormal, {sum(f.retry for f in people)} retried, "
          f"{sum(f.race for f in people)} double-submitted", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp), PEOPLE)
        print(f"stack ready in {stack.started_in:.0f} s at {stack.url}", flush=True)
        try:
            tokens, prepared = run_pool(lambda f: prepare(stack.url, f), people, "login + consent")
            print(f"login + consent: {len(people)} people in {prepared:.1f} s", flush=True)
            token_of = {f.userid: t for f, t in zip(people, tokens)}
            order = list(people)
            random.Random(SEED).shuffle(order)
            batches, peak = run_pool(lambda f: file_one(stack.url, token_of[f.userid], f), order, "filing")
            posts = [p for batch in batches for p in batch]
            print(f"peak: {len(posts)} filing POSTs in {peak:.1f} s", flush=True)
            failed["answers"], day = check_answers(people, posts)
            day = day or datetime.now(timezone.utc).date().isoformat()
            items, other_days = stored_reports(stack.env, day)
            failed["stored reports"], stored = check_store(people, items, other_days)
            counted = recount(items)
            counter_problems, counters = check_counters(stack.env, day, items)
            failed["counters"] = counter_problems
            overview_seconds: dict[str, float] = {}
            overview_status: dict[str, str] = {}
            hidden: dict[str, list[str]] = {}
            tokens_of = {who: requests.post(f"{stack.url}/auth/dev-login", json={"userid": who},
                                            timeout=10).json()["token"] for who in ("doc01", "leader01")}

            def overview(who: str, **params: str) -> tuple[int, Any, float]:
                began = time.perf_counter()
                answer = requests.get(f"{stack.url}/health/overview", params={"date": day, **params},
                                      headers={"Authorization": f"Bearer {tokens_of[who]}"}, timeout=300)
                try:
                    body = answer.json()
                except ValueError:
                    body = answer.text[:200]
                return answer.status_code, body, time.perf_counter() - began

            for who in ("doc01", "leader01"):
                status, body, overview_seconds[who] = overview(who)
                if status != 200:
                    overview_status[who] = f"HTTP {status} after {overview_seconds[who]:.0f} s"
                    failed["overview campus-wide"].append(f"overview as {who}: HTTP {status} "
                                                          f"{json.dumps(body)[:160]}")
                    continue
                found = check_overview(body, counted, len(people), who, hidden.setdefault(who, []))
                overview_status[who] = "= recount" if not found else "!= recount"
                failed["overview campus-wide"] += found
            # Per class (small index queries), as the hospital: classes with abnormal reports first.
            classes = sorted(counted["classes"], key=lambda c: (-counted["classes"][c]["abnormal"], c))[:CLASS_SAMPLE]
            class_seconds = []
            for class_id in classes:
                status, body, seconds = overview("doc01", **{"class": class_id})
                class_seconds.append(seconds)
                if status != 200:
                    failed["overview per class"].append(f"overview of {class_id}: HTTP {status} {json.dumps(body)[:160]}")
                    continue
                want = counted["classes"][class_id]
                got = {k: body["classes"].get(class_id, {}).get(k) for k in ("reported", "abnormal")}
                if got != want or {k: body["total"][k] for k in ("reported", "abnormal")} != want:
                    failed["overview per class"].append(f"overview of {class_id}: {got}, total {body['total']}; "
                                                        f"recount {want}")
            server_errors = stack.log.read_text(errors="replace").count("Traceback")
            served = server_durations(stack.log)
            jobs = health_jobs_acted(stack.log)
        except BaseException:
            print(stack.tail(), file=sys.stderr)
            keep_log(stack.log)
            raise
        finally:
            stopped, code = stack.stop()
            print(f"stack stopped in {stopped:.1f} s (exit {code})", flush=True)
        if code not in (0, None):
            failed["stack shutdown"].append(f"the stack exited with {code} on SIGINT")
        if any(job.get("recounted") for job in jobs):
            failed["counters"].append(f"the evening recount repaired counters during the run: {jobs}")
        if any(failed.values()):
            keep_log(stack.log)

    print(f"in-process sample of {SAMPLE} generated people + cast under mock_aws...", flush=True)
    sample = in_process(SAMPLE)
    failed["in-process filings"] = sample.problems
    if sample.scans:
        failed["no Scan"].append(f"{len(sample.scans)} Scan calls in-process: {sample.scans[:5]}")
    too_many = {ops: n for ops, n in sample.normal_ops.items() if len(ops) > 3}
    if too_many:
        failed["3 calls per normal filing"].append(f"normal filings with more than 3 AWS calls: "
                                                   f"{describe_ops(Counter(too_many))}")
    problems = [p for found in failed.values() for p in found]
    ratio = sample.handler_median / sample.bare_median

    latencies = [p.seconds for p in posts if p.error is None]
    firsts = [p.seconds for p in posts if p.kind == "first" and p.error is None]
    p50, p95, p99 = (percentile(latencies, s) for s in (0.50, 0.95, 0.99))
    rate = len(posts) / peak
    print()
    print(f"filing latency ({len(latencies)} POSTs): p50 {ms(p50)}, p95 {ms(p95)}, p99 {ms(p99)}, "
          f"max {ms(max(latencies))}; first filings only: p50 {ms(percentile(firsts, 0.5))}, "
          f"p95 {ms(percentile(firsts, 0.95))}, p99 {ms(percentile(firsts, 0.99))}")
    handled = served.get("POST /health/reports", [])
    if handled:
        print(f"the same filings as the stack timed them (app middleware, no queueing): p50 "
              f"{ms(percentile(handled, 0.5))}, p95 {ms(percentile(handled, 0.95))}, p99 {ms(percentile(handled, 0.99))}")
    print(f"throughput: {rate:.0f} filings/s ({len(posts)} in {peak:.1f} s, {WORKERS} workers); "
          f"login + consent {prepared:.1f} s")
    print(f"stored: {stored['items']} reports of {day} ({stored['abnormal']} abnormal), {stored['duplicates']} "
          f"duplicates, {stored['lost']} lost, {stored['not_v1']} not version 1")
    print(f"recount: {counted['total']['reported']} reported, {counted['total']['abnormal']} abnormal in "
          f"{len(counted['departments'])} departments, {len(counted['classes'])} classes; counter rows: "
          f"{counters['units']} units, {counters['reported']} reported, {counters['abnormal']} abnormal")
    print("overview campus-wide: " + ", ".join(f"{w} {overview_status.get(w)} ({ms(s)})"
                                               for w, s in overview_seconds.items())
          + f"; per class as doc01: {len(classes)} classes, median {ms(statistics.median(class_seconds) if class_seconds else 0)}")
    print(f"AWS calls in-process ({sample.filings} filings): normal {describe_ops(sample.normal_ops)}; "
          f"abnormal {describe_ops(sample.abnormal_ops)}; retry {describe_ops(sample.retry_ops)}; "
          f"Scan {len(sample.scans)}")
    print(f"handler {ms(sample.handler_median)} vs bare put {ms(sample.bare_median)} (medians of "
          f"{len(sample.handler_seconds)}): {ratio:.1f}x (target <= {BARE_PUT_RATIO_TARGET:.0f}x"
          f"{', missed' if ratio > BARE_PUT_RATIO_TARGET else ''})")
    if hidden.get("leader01"):
        print(f"leader01: {len(hidden['leader01'])} groups show no abnormal count (too small, by design); "
              "compared on reported only")
    if jobs:
        print(f"note: health jobs acted during the run: {jobs}")
    if server_errors:
        print(f"note: {server_errors} tracebacks in the stack's log")
    for problem in problems[:40]:
        print(f"FAIL {problem}", file=sys.stderr)

    def cell(share: float) -> str:
        client = ms(percentile(latencies, share))
        return f"{client} (app {ms(percentile(handled, share))})" if handled else client

    normal = sample.normal_ops.most_common(1)[0][0] if sample.normal_ops else ()
    abnormal = sample.abnormal_ops.most_common(1)[0][0] if sample.abnormal_ops else ()
    retry = sample.retry_ops.most_common(1)[0][0] if sample.retry_ops else ()
    verdict = "PASS" if not problems else "FAIL (" + "; ".join(
        f"{check}: {len(found)}" for check, found in failed.items() if found) + ")"
    line = (f"| {datetime.now(timezone.utc):%Y-%m-%d} | {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, code {commit()} | {len(people)} ({PEOPLE} + {len(CAST)} cast) "
            f"| {len(posts)} ({sum(f.abnormal for f in people)} abnormal, {sum(f.retry for f in people)} retries, "
            f"{sum(f.race for f in people)} races) | {WORKERS} | {cell(0.50)} | {cell(0.95)} | {cell(0.99)} "
            f"| {rate:.0f} filings/s ({peak:.0f} s) "
            f"| normal {len(normal)} ({', '.join(normal)}); abnormal {len(abnormal)}; retry {len(retry)}; "
            f"Scan {len(sample.scans)} "
            f"| {ms(sample.handler_median)} / {ms(sample.bare_median)} = {ratio:.1f}x "
            f"| {verdict}: {stored['items']} stored for {len(people)} filers, {stored['duplicates']} duplicates, "
            f"{stored['lost']} lost, all v1: {'yes' if not stored['not_v1'] else 'no'}; counter rows "
            f"{'=' if not failed['counters'] else '!='} recount ({counted['total']['reported']} reported, "
            f"{counted['total']['abnormal']} abnormal, {counters['units']} units); overview campus-wide: doc01 "
            f"{overview_status.get('doc01')}, leader01 {overview_status.get('leader01')}; overview of "
            f"{len(classes)} classes {'=' if not failed['overview per class'] else '!='} recount |")
    print(line)
    record(line)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
