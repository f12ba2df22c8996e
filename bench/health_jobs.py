"""The health jobs at campus scale: ``send_report_reminders`` and ``send_daily_health_summary``.

For each size (BENCH_JOB_SIZES, default 16,022 and 100,000 generated people, plus the demo cast),
in this process, under ``moto.mock_aws`` with every table and queue the code declares:

1. Loads the demo campus (``infra.local.demo.load_demo_campus``: departments, classes, people);
   timed, not the subject.
2. Runs the jobs as EventBridge invokes them (``client.lambda_.invoke`` of the function with a
   scheduled event, as tests/integration/test_health_jobs.py does) at campus times of Monday
   2026-11-30, each a run of its own (BENCH_JOB_RUNS, default ``reminder-0800 digest-1600
   summary-2000``; ``reminder-1400`` is the afternoon reminder):

   * ``reminder-0800``: the opening reminder, before anyone has filed (everyone expected is
     reminded: the job's largest send);
   * then a share of the people (BENCH_JOB_FILED, default 0.01, ~2 % of them abnormal) file
     today's report through the domain (``HealthDesk.file``: the report and its count, as the route
     writes them; timed, not the subject);
   * ``digest-1600`` (``send_report_reminders`` too): each class's counselors get the students
     still missing, one message per class;
   * ``summary-2000``: the evening recount (every unit's reports read through the unit index, one
     Query per unit whatever the share filed) and the figures to leaders and department heads.

   Per run: the handler's wall time (moto's, see below), every AWS call it made (by operation,
   and whether any is a Scan), the DynamoDB items read and written (write units by the item sizes),
   and the WeCom messages it queued: the notification parts it sent to the SQS queue and SQS
   accepted (one part = one WeCom ``message/send`` call of at most 1,000 recipients) and their
   recipients.
3. Delivers a sample of the queued parts (the first BENCH_JOB_DELIVER_PARTS, default 1, of each
   kind) through the ``send_notifications`` consumer with WeCom's HTTP API mocked (``responses``)
   and counts the WeCom calls really made (``gettoken``, ``message/send``: one per part) and the
   consumer's AWS calls per recipient (outbox row, per-person delivery rows, per-member rate
   counters). Not all parts: the per-member counters are one UpdateItem per recipient, which moto
   serves at a few hundred a second (100,000 recipients would take minutes).

Times are moto's, in process: a GSI query in moto walks and sorts the whole table for every page,
so the roster read (pages of 1,000 people) grows with the square of the campus, and the recount's
queries with units x reports filed (each of its queries walks every stored report). The calls
and items are what carries over to DynamoDB. At 100,000 people every roster read takes minutes
here (every run reads the roster once), hence the small default share filed (``BENCH_JOB_FILED=0.1``
adds minutes to the summary at that size). ``BENCH_JOB_SIZES=16022`` is a quick run.

Run: ``.venv/bin/python -m bench.health_jobs [--json out.json]`` (the figures as JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import (Recorder, describe_operations, dump, items_read, local_stage_env, log, machine,
                          moto_campus, operations, quiet_stdout, scans, test_client, writes)

SIZES = [int(s) for s in re.split(r"[ ,]+", os.environ.get("BENCH_JOB_SIZES", "16022 100000").strip()) if s]
RUNS = [r for r in re.split(r"[ ,]+", os.environ.get("BENCH_JOB_RUNS", "reminder-0800 digest-1600 summary-2000"))
        if r]
FILED = float(os.environ.get("BENCH_JOB_FILED", "0.01"))
DELIVER_PARTS = int(os.environ.get("BENCH_JOB_DELIVER_PARTS", "1"))
SEED = int(os.environ.get("BENCH_SEED", "2020"))
ABNORMAL_SHARE = 0.02
TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 30)  # a Monday, as in tests/integration/test_health_jobs.py
JOBS = {"reminder-0800": ("send_report_reminders", clock(8, 5)),
        "reminder-1400": ("send_report_reminders", clock(14, 5)),
        "digest-1600": ("send_report_reminders", clock(16, 5)),
        "summary-2000": ("send_daily_health_summary", clock(20, 5))}
FILING_AT = clock(9, 0)


def at(moment: clock) -> datetime:
    """``moment`` on campus on :data:`DAY`, in UTC."""
    return datetime.combine(DAY, moment, TZ).astimezone(timezone.utc)


def command(sizes: list[int] = SIZES) -> str:
    """The command that reproduces these figures (of ``sizes``)."""
    return (f"BENCH_JOB_SIZES={','.join(str(s) for s in sizes)} BENCH_JOB_RUNS={','.join(RUNS)} "
            f"BENCH_JOB_FILED={FILED:g} .venv/bin/python -m bench.health_jobs")


# -- one size ----------------------------------------------------------------------------------------
def run_size(size: int) -> dict[str, Any]:
    import time_machine

    from chalicelib.db.directory import DirectoryRepository
    from infra.local.demo import load_demo_campus

    figures: dict[str, Any] = {"size": size, "command": command([size]), "runs": []}
    with local_stage_env(), quiet_stdout(), moto_campus():
        began = time.perf_counter()
        counts = load_demo_campus(DirectoryRepository(), size=size)
        figures["load_seconds"] = time.perf_counter() - began
        figures["people"] = counts.people
        figures["classes"] = counts.classes
        log(f"[{size}] campus loaded: {counts.people} people, {counts.classes} classes in "
            f"{figures['load_seconds']:.1f} s")
        with test_client() as client:
            for name in RUNS:
                function, moment = JOBS[name]
                if name.startswith(("digest", "summary", "reminder-14")) and "filings" not in figures:
                    with time_machine.travel(at(FILING_AT), tick=True):
                        figures["filings"] = file_share(size)
                    log(f"[{size}] {figures['filings']['filed']} filed in {figures['filings']['seconds']:.1f} s")
                run = run_job(client, name, function, at(moment))
                sample = delivery_sample(run["_bodies"])
                if sample:
                    with time_machine.travel(at(moment) + timedelta(minutes=1), tick=True):
                        run["delivery"] = deliver(client, sample)
                run.pop("_bodies", None)
                figures["runs"].append(run)
                log(f"[{size}] {name}: {run['seconds']:.1f} s, {run['calls']} AWS calls "
                    f"({describe_operations(Counter(run['operations']))}), {run['parts']} parts to "
                    f"{run['recipients']} recipients, Scan {len(run['scans'])}")
    return figures


def file_share(size: int) -> dict[str, Any]:
    """A share of everyone expected files today's report through the domain (the route's own
    call, ``HealthDesk.file``), ~2 % of them abnormal."""
    from chalicelib.api import deps
    from chalicelib.domain.access import Actor
    from chalicelib.domain.health import HealthAnswers
    from chalicelib.settings import get_settings
    from infra.local.demo import CAST, generate_population
    from tests.support.health import FEVER, NORMAL

    people = [(u, t, d, c) for u, _, t, d, c, *_ in CAST]
    people += [(p.userid, p.person_type, p.department, p.class_id) for p in generate_population(size)[0]
               if p.status == "active"]
    rng = random.Random(SEED)
    chosen = rng.sample(people, round(len(people) * FILED))
    version = get_settings().health_consent_version
    desk = deps.health_desk()
    normal, fever = HealthAnswers(**NORMAL), HealthAnswers(**FEVER)
    began = time.perf_counter()
    abnormal = 0
    for userid, person_type, department, class_id in chosen:
        sick = rng.random() < ABNORMAL_SHARE
        abnormal += sick
        actor = Actor(userid=userid, person_type=person_type, department=department,
                      class_id=class_id if person_type == "student" else None, health_consent=version)
        desk.file(actor, fever if sick else normal)
    return {"filed": len(chosen), "abnormal": abnormal, "share": FILED, "seconds": time.perf_counter() - began}


def run_job(client: Any, name: str, function: str, when: datetime) -> dict[str, Any]:
    """Invoke ``function`` at ``when`` (the clock stands still during the run) with every AWS call
    recorded. The notification parts it queued are read from its own SendMessage(Batch) calls
    (every entry accepted, checked), then the queue is purged: moto's SQS walks the whole queue for
    every receive, so reading thousands of parts back would take minutes."""
    import boto3
    import time_machine

    from chalicelib.resources import NOTIFICATIONS
    from tests.support.health import scheduled_event

    recorder = Recorder()
    with time_machine.travel(when, tick=False):
        with recorder.recording() as calls:
            began = time.perf_counter()
            report = client.lambda_.invoke(function, scheduled_event(function)).payload
            seconds = time.perf_counter() - began
        written = writes(calls)
    bodies, refused = queued(calls, NOTIFICATIONS.name)
    sqs = boto3.client("sqs")
    with time_machine.travel(when + timedelta(minutes=1), tick=True):  # (one purge a minute, moto checks)
        sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName=NOTIFICATIONS.name)["QueueUrl"])
    read, read_bytes = items_read(calls)
    recipients = [u for p in bodies for u in p["recipients"]]
    kinds = Counter(p["key"].split(":", 1)[0] for p in bodies)
    return {
        "run": name, "function": function, "at": when.astimezone(TZ).strftime("%H:%M"), "report": report,
        "seconds": seconds, "calls": len(calls), "operations": dict(operations(calls)),
        "application_calls": sum(c.application for c in calls), "scans": scans(calls),
        "items_read": read, "bytes_read": read_bytes, "items_written": sum(not w.refused for w in written),
        "refused_writes": sum(w.refused for w in written), "write_units": sum(w.write_units for w in written),
        "largest_item_written": max((w.size for w in written if not w.refused), default=0),
        "parts": len(bodies), "parts_refused_by_sqs": refused, "parts_by_kind": dict(kinds),
        "recipients": len(recipients), "distinct_recipients": len(set(recipients)),
        "largest_part": max((len(p["recipients"]) for p in bodies), default=0),
        "_bodies": bodies,
    }


def queued(calls: list[Any], queue_name: str) -> tuple[list[dict[str, Any]], int]:
    """The message bodies ``calls`` sent to ``queue_name`` and SQS accepted; how many it refused."""
    bodies, refused = [], 0
    for call in calls:
        if call.service != "sqs" or not call.params.get("QueueUrl", "").endswith("/" + queue_name) or call.error:
            continue
        if call.operation == "SendMessage":
            bodies.append(json.loads(call.params["MessageBody"]))
        elif call.operation == "SendMessageBatch":
            failed = {f["Id"] for f in call.response.get("Failed", [])}
            refused += len(failed)
            bodies += [json.loads(e["MessageBody"]) for e in call.params["Entries"] if e["Id"] not in failed]
    return bodies, refused


def delivery_sample(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first :data:`DELIVER_PARTS` parts of each kind (reminder, digest, summary)."""
    taken: Counter = Counter()
    sample = []
    for body in bodies:
        kind = body["key"].split(":", 1)[0]
        if taken[kind] < DELIVER_PARTS:
            taken[kind] += 1
            sample.append(body)
    return sample


def deliver(client: Any, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """``bodies`` through ``send_notifications`` (batches of the queue's size), WeCom mocked."""
    import responses

    from chalicelib.resources import NOTIFICATIONS
    from tests.support.health import sqs_event

    sent_to: list[int] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        sent_to.append(len(json.loads(request.body)["touser"].split("|")))
        return 200, {}, json.dumps({"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": f"m{len(sent_to)}"})

    recorder = Recorder()
    failures = 0
    with responses.RequestsMock(assert_all_requests_are_fired=False) as wecom:
        wecom.add(responses.GET, re.compile(r"https://qyapi\.weixin\.qq\.com/cgi-bin/gettoken.*"),
                  json={"errcode": 0, "errmsg": "ok", "access_token": "T", "expires_in": 7200})
        wecom.add_callback(responses.POST, re.compile(r"https://qyapi\.weixin\.qq\.com/cgi-bin/message/send.*"),
                           callback=answer)
        with recorder.recording() as calls:
            began = time.perf_counter()
            for start in range(0, len(bodies), NOTIFICATIONS.batch_size):
                event = sqs_event(NOTIFICATIONS.name, bodies[start:start + NOTIFICATIONS.batch_size])
                answer_ = client.lambda_.invoke("send_notifications", event).payload
                failures += len(answer_.get("batchItemFailures", []))
            seconds = time.perf_counter() - began
        wecom_calls = Counter(c.request.url.split("/cgi-bin/", 1)[1].split("?", 1)[0] for c in wecom.calls)
    read, _ = items_read(calls)
    return {"parts": len(bodies), "recipients": sum(len(b["recipients"]) for b in bodies),
            "seconds": seconds, "wecom_calls": dict(wecom_calls), "recipients_sent": sum(sent_to),
            "failed_records": failures, "calls": len(calls), "operations": dict(operations(calls)),
            "scans": scans(calls), "items_read": read}


# -- the report --------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here (default: print them)")
    args = parser.parse_args()
    figures: dict[str, Any] = {"benchmark": "health_jobs", "command": command(), "machine": machine(),
                               "filed_share": FILED, "runs": RUNS, "deliver_parts": DELIVER_PARTS, "sizes": []}
    for size in SIZES:
        began = time.perf_counter()
        result = run_size(size)
        result["wall_seconds"] = time.perf_counter() - began
        figures["sizes"].append(result)
        log(f"[{size}] done in {result['wall_seconds']:.0f} s")
    dump(figures, args.json)
    return 1 if any(r["scans"] for s in figures["sizes"] for r in s["runs"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
