"""AWS calls and DynamoDB item sizes per operation, and a check that nothing the application
runs issues a Scan.

In this process, under ``moto.mock_aws`` (every table, queue and bucket the code declares), with
the demo campus (the cast + BENCH_CALLS_PEOPLE generated people, default 1,000) and the clock on
Monday 2026-12-07 09:00 campus time, the main routes go through ``chalice.test.Client`` as the
H5 and the door system send them. Logging in and consenting happen first, unrecorded. Each
operation is then recorded on its own with a botocore hook (as tests/support/aws_calls.py does,
keeping the responses too):

* requests: ``POST /health/reports`` (normal, the same again, abnormal, a correction; and into
  the largest counter row, a class-less unit as full as on a 16,022- and a 100,000-person campus),
  ``POST /services/student-leave/applications`` (an 8-day leave: three approval steps),
  ``POST /applications/{id}/decisions`` (each step), ``GET /leave/overview`` (with names, figures
  only), ``GET /resources/cnki/go``, ``GET /health/overview`` (campus-wide before the day's
  jobs have run: counted live from the directory, nothing written; a leader's; a counselor's classes), ``POST
  /webhooks/door/events`` (1 and 25 signed events), ``GET /healthz``;
* consumers: every message the requests queued, delivered to its queue's consumer (WeCom's HTTP
  API mocked with ``responses``; the door gateway too);
* jobs: every scheduled function of the app, invoked with its payload from events/ at a campus
  time when it acts (reminders 14:05, the counselors' digest 16:05, the summary 20:05, the others
  at 10:00; the directory sync against a fake WeCom listing the demo campus), then the
  notifications they queued, delivered.

Per operation: the HTTP status (or the job's report), every AWS call by operation, the DynamoDB
items written with their size as stored afterwards (``PutItem`` as sent; updated items read back)
and the write units that size costs (1 per KB, x2 in a transaction), the items read, and any
Scan. The run fails (exit 1) if the application issued a Scan anywhere.

Run: ``.venv/bin/python -m bench.calls_per_operation [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta, timezone
from typing import Any

from bench.common import (ROOT, Call, Recorder, describe_operations, dump, items_read, local_stage_env, log,
                          machine, moto_campus, operations, quiet_stdout, scans, test_client, writes)

PEOPLE = int(os.environ.get("BENCH_CALLS_PEOPLE", "1000"))
MORNING = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 on campus
START = MORNING + timedelta(days=1)  # the leave: Tuesday 09:00, for 8 days
HOLDERS = {"counselor:cs2001": "fdy01", "dept_head:cs": "dean01", "role:student_affairs": "xg01"}
JOB_TIMES = {"send_report_reminders": [(14, 5), (16, 5)], "send_daily_health_summary": [(20, 5)]}
OTHER_JOBS_AT = (10, 0)
LARGE_UNIT_CAMPUSES = (16_022, 100_000)  # campus sizes whose largest counter row a filing meets


def command() -> str:
    return f"BENCH_CALLS_PEOPLE={PEOPLE} .venv/bin/python -m bench.calls_per_operation"


def campus_time(hour: int, minute: int) -> datetime:
    return datetime(2026, 12, 7, hour - 8, minute, tzinfo=timezone.utc)


class Operations:
    """Records operations one by one; :attr:`rows` are their figures, :attr:`calls` all calls."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.rows: list[dict[str, Any]] = []

    def record(self, kind: str, label: str, action: Any) -> Any:
        with self.recorder.recording() as calls:
            began = time.perf_counter()
            outcome = action()
            seconds = time.perf_counter() - began
        self.rows.append(figures(kind, label, outcome, calls, seconds))
        return outcome

    @property
    def calls(self) -> list[Call]:
        return self.recorder.calls


def figures(kind: str, label: str, outcome: Any, calls: list[Call], seconds: float) -> dict[str, Any]:
    written = writes(calls)
    read, read_bytes = items_read(calls)
    tables: dict[str, list[int]] = {}
    for write in written:
        how = f"{write.how}, refused" if write.refused else write.how
        tables.setdefault(f"{write.table} ({how})", []).append(write.size)
    status = outcome[0] if isinstance(outcome, tuple) else outcome
    return {"kind": kind, "operation": label, "outcome": status, "seconds": seconds, "calls": len(calls),
            "operations": dict(operations(calls)), "application_calls": sum(c.application for c in calls),
            "written": {t: sizes for t, sizes in tables.items()},
            "items_written": sum(not w.refused for w in written),
            "refused_writes": sum(w.refused for w in written),
            "write_units": sum(w.write_units for w in written),
            "largest_item_written": max((w.size for w in written if not w.refused), default=0),
            "failed_calls": [f"{c.operation}: {c.error}" for c in calls if c.error],
            "items_read": read, "bytes_read": read_bytes, "scans": scans(calls)}


# -- the scenario ------------------------------------------------------------------------------------
def scenario() -> dict[str, Any]:
    import boto3
    import time_machine

    from chalicelib.db.directory import DirectoryRepository
    from chalicelib.domain.door_signature import sign
    from infra.local.demo import load_demo_campus
    from tests.support.entry import WEBHOOK_SECRET
    from tests.support.hall import Tokens
    from tests.support.health import FEVER, NORMAL, consent
    from tests.support.identity import call
    from tests.support.leave import file_leave, leave_form

    ops = Operations()
    with local_stage_env(), quiet_stdout(), moto_campus(), test_client() as client, wecom_and_gateway() as peers:
        with time_machine.travel(MORNING, tick=True):
            load_demo_campus(DirectoryRepository(), size=PEOPLE)
            tokens = Tokens(client)
            for userid in ("t001", "s001", "s002", "s003", "fdy01", "dean01", "xg01", "leader01", "doc01"):
                tokens[userid]  # noqa: B018 - logs in (not recorded)
            for userid in ("t001", "s002", "s003"):
                consent(client, tokens[userid])
            call(client, "POST", "/health/reports", tokens["s003"], NORMAL)  # to be corrected below

            def request(method: str, path: str, who: str | None = None, body: Any = None,
                        headers: dict[str, str] | None = None) -> Any:
                return lambda: call(client, method, path, tokens[who] if who else None, body, headers)

            ops.record("request", "GET /healthz", request("GET", "/healthz"))
            ops.record("request", "POST /health/reports (normal, first of the day)",
                       request("POST", "/health/reports", "t001", NORMAL))
            ops.record("request", "POST /health/reports (the same answers again: unchanged)",
                       request("POST", "/health/reports", "t001", NORMAL))
            ops.record("request", "POST /health/reports (abnormal: case alert queued)",
                       request("POST", "/health/reports", "s002", FEVER))
            ops.record("request", "POST /health/reports (a correction, normal to abnormal)",
                       request("POST", "/health/reports", "s003", FEVER))
            large_unit(client, ops, tokens)
            drain_queues(client, ops, "after the health reports")

            status, leave = ops.record("request", "POST /services/student-leave/applications (8 days: 3 steps)",
                                       lambda: file_leave(client, tokens["s001"],
                                                          leave_form(START, START + timedelta(days=8))))
            if status != 201:
                raise RuntimeError(f"filing the leave: {status} {leave}")
            chain = [step["authority"] for step in leave["chain"]]
            for number, authority in enumerate(chain, 1):
                ops.record("request", f"POST /applications/{{id}}/decisions (approve step {number} of "
                           f"{len(chain)}: {authority.split(':')[0]})",
                           request("POST", f"/applications/{leave['id']}/decisions", HOLDERS[authority],
                                   {"decision": "approve"}))
            drain_queues(client, ops, "after the leave")
            day = (START + timedelta(days=1)).date().isoformat()
            ops.record("request", "GET /leave/overview (student affairs: names)",
                       request("GET", f"/leave/overview?date={day}", "xg01"))
            ops.record("request", "GET /leave/overview (leader: figures only)",
                       request("GET", f"/leave/overview?date={day}", "leader01"))
            ops.record("request", "GET /resources/cnki/go (302)", lambda: go(client, tokens["s001"], "cnki"))
            ops.record("request", "GET /health/overview (hospital, campus-wide, the day not opened: counted live)",
                       request("GET", "/health/overview", "doc01"))
            ops.record("request", "GET /health/overview (hospital, campus-wide, again)",
                       request("GET", "/health/overview", "doc01"))
            ops.record("request", "GET /health/overview (leader, campus-wide)",
                       request("GET", "/health/overview", "leader01"))
            ops.record("request", "GET /health/overview (counselor: own classes)",
                       request("GET", "/health/overview", "fdy01"))
            for size in (1, 25):
                events = [door_event(f"s{n % 20 + 1:03d}", MORNING - timedelta(minutes=n)) for n in range(size)]
                raw = json.dumps({"events": events}).encode()
                ops.record("request", f"POST /webhooks/door/events ({size} signed event{'s' if size > 1 else ''})",
                           lambda raw=raw: webhook(client, raw, sign(WEBHOOK_SECRET, raw, int(time.time()))))
            drain_queues(client, ops, "after the requests")

        for name, event in scheduled_functions():
            for hour, minute in JOB_TIMES.get(name, [OTHER_JOBS_AT]):
                with time_machine.travel(campus_time(hour, minute), tick=False):
                    label = f"job {name} at {hour:02d}:{minute:02d}"
                    with fake_wecom_directory(PEOPLE) if name == "sync_wecom_directory" else nullcontext():
                        ops.record("job", label, lambda name=name, event=event: job(client, name, event))
        with time_machine.travel(campus_time(20, 6), tick=True):
            drain_queues(client, ops, "after the jobs")
        sqs = boto3.client("sqs")
        left = {q: int(sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=q)["QueueUrl"],
                                                AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
                       ["ApproximateNumberOfMessages"]) for q in queue_names()}
        wecom_calls = Counter(c.request.url.split("/cgi-bin/", 1)[1].split("?", 1)[0] for c in peers.calls
                              if "qyapi.weixin.qq.com" in c.request.url)
    application = [c for c in ops.calls if c.application]
    return {"rows": ops.rows, "calls": len(ops.calls), "application_calls": len(application),
            "scans": scans(ops.calls), "application_scans": scans(application),
            "operations_seen": sorted({f"{c.service}:{c.operation}" for c in application}),
            "wecom_calls": dict(wecom_calls), "messages_left": {q: n for q, n in left.items() if n}}


def large_unit(client: Any, ops: Operations, tokens: Any) -> None:
    """Filings into the largest counter row. A unit without classes (a department's third-party
    staff, all in ``hq`` on the demo campus) keeps one row holding everyone counted in it, and each
    count rewrites that row. The row is filled first (``HealthRepository.count``, unrecorded, for
    userids shaped like the generated ones) up to all the third-party people of a generated campus
    of each size in :data:`LARGE_UNIT_CAMPUSES` but one; that one, a third-party person of the
    directory, then files (recorded); the last one files again (the same answers: the row is read
    back)."""
    from chalicelib.api import deps
    from chalicelib.domain.health import Unit
    from chalicelib.settings import get_settings
    from infra.local.demo import generate_population
    from tests.support.health import NORMAL, consent
    from tests.support.identity import call

    filers = ["w001"] + [p.userid for p in generate_population(PEOPLE)[0]
                         if p.person_type == "third_party" and p.department == "hq"]
    store = deps.health_store()
    day = MORNING.astimezone(get_settings().tz).date()
    expires = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(days=181)
    unit = Unit("hq", None, "third_party")
    in_row = 0
    for campus, filer in zip(LARGE_UNIT_CAMPUSES, filers):
        target = sum(1 for p in generate_population(campus)[0] if p.person_type == "third_party"
                     and p.department == "hq")
        for number in range(in_row, target - 1):
            store.count(day.isoformat(), unit, f"gx{number:05d}", False, 1, expires)
        in_row = max(in_row, target - 1)
        consent(client, tokens[filer])
        ops.record("request", f"POST /health/reports (third party, the last of the {target:,} of a {campus:,}-person "
                   f"campus: its unit row holds {in_row:,} others)",
                   lambda filer=filer: call(client, "POST", "/health/reports", tokens[filer], NORMAL))
        in_row += 1
    ops.record("request", "POST /health/reports (the same again: the counter row read back)",
               lambda: call(client, "POST", "/health/reports", tokens[filer], NORMAL))


def go(client: Any, token: str, resource_id: str) -> tuple[int, str]:
    response = client.http.get(f"/resources/{resource_id}/go", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.headers.get("location", "")


def door_event(userid: str, at: datetime) -> dict[str, Any]:
    """A gate passage as the door system posts it (tests/integration/test_door_events.py)."""
    return {"event_id": f"ev-{uuid.uuid4().hex}", "gate": "east", "direction": "in", "at": at.isoformat(),
            "credential_kind": "campus_card", "card_number": userid, "userid": userid, "result": "granted"}


def webhook(client: Any, raw: bytes, signature: str) -> tuple[int, Any]:
    response = client.http.post("/webhooks/door/events", body=raw,
                                headers={"Content-Type": "application/json", "X-Door-Signature": signature})
    return response.status_code, json.loads(response.body)


def job(client: Any, name: str, event: dict[str, Any]) -> str:
    """Invoke a scheduled function; its report (counts) as the outcome."""
    try:
        payload = client.lambda_.invoke(name, event).payload
    except Exception as exc:  # noqa: BLE001 - a failing job is reported, its calls still counted
        return f"failed: {type(exc).__name__}: {str(exc)[:120]}"
    if isinstance(payload, dict):
        shown = {k: v for k, v in payload.items() if v not in (0, [], None, {}, "")}
        return json.dumps(shown, ensure_ascii=False, default=str)[:160] or "{}"
    return str(payload)[:160]


def scheduled_functions() -> list[tuple[str, dict[str, Any]]]:
    """Every scheduled function of the app, with its payload from events/ (or a generic one)."""
    from chalice.app import ScheduledEventConfig

    from app import app
    from tests.support.health import scheduled_event

    found = []
    for source in app.event_sources:
        if isinstance(source, ScheduledEventConfig):
            path = next((p for p in (ROOT / "events").glob(f"*scheduled_{source.name}.json")), None)
            found.append((source.name, json.loads(path.read_text()) if path else scheduled_event(source.name)))
    return found


def queue_names() -> list[str]:
    from chalicelib.resources import QUEUES

    return [q.name for q in QUEUES]


def drain_queues(client: Any, ops: Operations, when: str) -> None:
    """Deliver every visible message of every queue to its consumer (as Lambda's poller would),
    each delivery recorded as an operation; deleted unless the consumer reported it failed."""
    import boto3
    from chalice.app import SQSEventConfig

    from app import app

    sqs = boto3.client("sqs")
    consumers = {s.queue: s for s in app.event_sources if isinstance(s, SQSEventConfig)}
    for _ in range(5):  # a consumer may queue more (an alert queues notifications)
        delivered = False
        for queue, source in consumers.items():
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            messages: list[dict[str, Any]] = []
            while True:
                batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                            VisibilityTimeout=60).get("Messages", [])
                if not batch:
                    break
                messages += batch
            for start in range(0, len(messages), source.batch_size):
                chunk = messages[start:start + source.batch_size]
                event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                                      "body": m["Body"], "attributes": m["Attributes"], "messageAttributes": {},
                                      "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                                      "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                                      "awsRegion": "us-east-1"} for m in chunk]}
                label = f"consumer {source.name} ({len(chunk)} message{'s' if len(chunk) > 1 else ''}, {when})"
                _, failed = ops.record("consumer", label,
                                       lambda event=event, name=source.name: consume(client, name, event))
                for message in chunk:
                    if message["MessageId"] not in failed:
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                delivered = True
        if not delivered:
            return


def consume(client: Any, name: str, event: dict[str, Any]) -> tuple[str, set[str]]:
    """Invoke a consumer; (what it did, the ids of the messages it reported failed)."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    ids = {r["messageId"] for r in event["Records"]}
    try:
        answer = client.lambda_.invoke(name, event).payload or {}
        failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
    except BatchProcessingError:  # every record failed
        failed = ids
    return f"{len(ids) - len(failed)} handled" + (f", {len(failed)} failed" if failed else ""), failed


@contextmanager
def wecom_and_gateway() -> Iterator[Any]:
    """WeCom's HTTP API (token, message/send) and the door gateway, mocked with ``responses``."""
    import responses

    from tests.support.entry import GATEWAY_URL

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, re.compile(r"https://qyapi\.weixin\.qq\.com/cgi-bin/gettoken.*"),
                 json={"errcode": 0, "errmsg": "ok", "access_token": "T", "expires_in": 7200})
        mock.add(responses.POST, re.compile(r"https://qyapi\.weixin\.qq\.com/cgi-bin/message/send.*"),
                 json={"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": "m1"})
        for method in (responses.POST, responses.PUT, responses.DELETE):
            mock.add(method, re.compile(re.escape(GATEWAY_URL) + ".*"), json={"code": 0, "message": "ok"})
        yield mock


@contextmanager
def fake_wecom_directory(size: int) -> Iterator[None]:
    """WeCom's directory as the local stack's fake peer lists it (the demo campus), for the
    nightly sync (which reads it through ``wecom_callback.wecom_api``)."""
    from chalicelib.api import wecom_callback
    from infra.local.demo import wecom_members

    members = wecom_members(size)

    class Directory:
        def department_simplelist(self) -> list[dict[str, Any]]:
            return [{"id": 1, "parentid": 0, "order": 1}]

        def user_list_id(self) -> Iterator[dict[str, Any]]:
            return ({"userid": u, "department": d} for u, m in members.items() for d in m["department"])

        def user_get(self, userid: str) -> dict[str, Any] | None:
            member = next((m for u, m in members.items() if u.lower() == userid.lower()), None)
            return {"userid": userid, **member} if member else None

    original = wecom_callback.wecom_api
    wecom_callback.wecom_api = lambda: Directory()
    try:
        yield
    finally:
        wecom_callback.wecom_api = original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here (default: print them)")
    args = parser.parse_args()
    began = time.perf_counter()
    result = scenario()
    result.update(benchmark="calls_per_operation", command=command(), machine=machine(), people=PEOPLE,
                  wall_seconds=time.perf_counter() - began)
    for row in result["rows"]:
        log(f"{row['operation']}: {row['outcome']}; {row['calls']} calls "
            f"({describe_operations(Counter(row['operations']))}); written {row['items_written']} "
            f"(refused {row['refused_writes']}; {row['write_units']} WCU, largest {row['largest_item_written']} B)")
    log(f"Scan calls by the application: {len(result['application_scans'])} of {result['application_calls']} calls")
    dump(result, args.json)
    return 1 if result["application_scans"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
