"""The morning peak of ``make bench``: bench/health_peak.py's machinery at a smaller size.

``make bench-health`` runs the whole 16,022-person peak (~15 minutes) with every check. This
runs the same thing for BENCH_PEOPLE generated people (default 2,000) plus the demo cast, reusing
its functions (nothing is copied):

1. The local stack (moto server, API, pollers) in a subprocess; everyone logs in and consents
   (not timed); then every person files today's report over HTTP from BENCH_WORKERS threads
   (default 8), ~2 % abnormal, ~2 % re-sent once, a few sent twice at once.
2. Latency: the client's wall time of each ``POST /health/reports`` and the handler's own time
   (``duration_ms`` of the same requests in the stack's access log: the app's middleware, without
   the server's queueing), p50 and p95; throughput.
3. Checks (read back from moto): every answer as expected, one stored report per filer, the day's
   counter rows equal to the recount.
4. In this process, under ``mock_aws``, a sample of BENCH_SAMPLE filings (default 200) through
   ``chalice.test.Client`` with every AWS call recorded: calls per normal, abnormal and retried
   filing, no Scan; and the ratio of the median handler time of a normal filing to the median
   bare PynamoDB ``save()`` of the same item into a table without indexes, right after it, in the
   same moto backend (target <= 2x: reported, not enforced).

Run: ``BENCH_PEOPLE=2000 .venv/bin/python -m bench.peak [--json out.json]``. Exits 1 when a
check fails. A run that crosses campus midnight fails its day check: run it again.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import health_peak as hp
from bench.common import Recorder, dump, log, machine, percentile

PEOPLE = int(os.environ.get("BENCH_PEOPLE", "2000"))
TARGET = hp.BARE_PUT_RATIO_TARGET


def command() -> str:
    return (f"BENCH_PEOPLE={PEOPLE} BENCH_WORKERS={hp.WORKERS} BENCH_SAMPLE={hp.SAMPLE} "
            ".venv/bin/python -m bench.peak")


def over_http(people: list[hp.Filer]) -> dict[str, Any]:
    """Steps 1-3: the peak through the local stack, and its checks."""
    failed: dict[str, list[str]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        stack = hp.start_stack(Path(tmp), PEOPLE)
        log(f"peak: stack ready in {stack.started_in:.0f} s at {stack.url}")
        try:
            tokens, prepared = hp.run_pool(lambda f: hp.prepare(stack.url, f), people, "login + consent")
            token_of = {f.userid: t for f, t in zip(people, tokens)}
            order = list(people)
            random.Random(hp.SEED).shuffle(order)
            batches, seconds = hp.run_pool(lambda f: hp.file_one(stack.url, token_of[f.userid], f), order, "filing")
            posts = [p for batch in batches for p in batch]
            failed["answers"], day = hp.check_answers(people, posts)
            day = day or datetime.now(timezone.utc).date().isoformat()
            items, other_days = hp.stored_reports(stack.env, day)
            failed["stored reports"], stored = hp.check_store(people, items, other_days)
            failed["counters"], counters = hp.check_counters(stack.env, day, items)
            handled = hp.server_durations(stack.log).get("POST /health/reports", [])
            tracebacks = stack.log.read_text(errors="replace").count("Traceback")
        except BaseException:
            log(stack.tail())
            hp.keep_log(stack.log)
            raise
        finally:
            stopped, code = stack.stop()
        if code not in (0, None):
            failed["stack shutdown"].append(f"the stack exited with {code} on SIGINT")
        if any(failed.values()):
            hp.keep_log(stack.log)
    latencies = [p.seconds for p in posts if p.error is None]
    return {
        "stack_start_seconds": stack.started_in, "login_consent_seconds": prepared, "peak_seconds": seconds,
        "posts": len(posts), "throughput": len(posts) / seconds, "day": day,
        "client": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                   "p99": percentile(latencies, 0.99)},
        "handler": ({"p50": percentile(handled, 0.5), "p95": percentile(handled, 0.95),
                     "p99": percentile(handled, 0.99), "count": len(handled)} if handled else None),
        "stored": stored, "counters": counters, "tracebacks": tracebacks,
        "problems": {check: found[:10] for check, found in failed.items() if found},
    }


def in_process() -> dict[str, Any]:
    """Step 4: calls per filing and the handler against a bare put (bench/health_peak.py's sample).
    Every call is also timed here, to split a normal filing's handler time into its three AWS calls
    (medians of the same operations on the same tables) and the rest (the app's own code)."""
    recorder = Recorder()
    with recorder.recording():
        sample = hp.in_process(hp.SAMPLE)

    def median_of(operation: str, table: str) -> float:
        found = [c.seconds for c in recorder.calls if c.operation == operation and not c.error
                 and c.params.get("TableName", "").endswith(table)]
        return statistics.median(found) if found else 0.0

    calls = {"GetItem people": median_of("GetItem", "-people"),
             "PutItem health_reports": median_of("PutItem", "-health_reports"),
             "UpdateItem health_days": median_of("UpdateItem", "-health_days")}

    def top(found: Any) -> list[str]:
        return list(found.most_common(1)[0][0]) if found else []

    problems = list(sample.problems)
    if sample.scans:
        problems.append(f"{len(sample.scans)} Scan calls: {sample.scans[:5]}")
    return {
        "filings": sample.filings, "normal": top(sample.normal_ops), "abnormal": top(sample.abnormal_ops),
        "retry": top(sample.retry_ops),
        "normal_variants": {" ".join(ops): n for ops, n in sample.normal_ops.items()},
        "scans": sample.scans, "all_operations": dict(sample.all_ops),
        "handler": {"p50": sample.handler_median, "p95": percentile(sample.handler_seconds, 0.95),
                    "count": len(sample.handler_seconds)},
        "bare_put": {"p50": sample.bare_median, "p95": percentile(sample.bare_seconds, 0.95),
                     "count": len(sample.bare_seconds)},
        "ratio": sample.handler_median / sample.bare_median,
        "ratio_p95": percentile(sample.handler_seconds, 0.95) / percentile(sample.bare_seconds, 0.95),
        "aws_calls_median": calls, "aws_seconds": sum(calls.values()),
        "app_seconds": sample.handler_median - sum(calls.values()),
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here (default: print them)")
    args = parser.parse_args()
    began = time.perf_counter()
    people = hp.filers(PEOPLE)
    log(f"peak: {len(people)} filers ({PEOPLE} generated + cast), {hp.WORKERS} workers")
    figures: dict[str, Any] = {"benchmark": "peak", "command": command(), "machine": machine(), "people": PEOPLE,
                               "filers": len(people), "workers": hp.WORKERS,
                               "abnormal": sum(f.abnormal for f in people), "retries": sum(f.retry for f in people),
                               "races": sum(f.race for f in people), "target": TARGET}
    figures["http"] = over_http(people)
    log(f"peak: {figures['http']['posts']} filings in {figures['http']['peak_seconds']:.0f} s; in-process sample...")
    figures["in_process"] = in_process()
    figures["wall_seconds"] = time.perf_counter() - began
    sample = figures["in_process"]
    log(f"peak: handler {sample['handler']['p50'] * 1000:.1f} ms / bare put {sample['bare_put']['p50'] * 1000:.1f} ms"
        f" = {sample['ratio']:.1f}x (target <= {TARGET:g}x); calls per normal filing {len(sample['normal'])}")
    dump(figures, args.json)
    return 1 if figures["http"]["problems"] or sample["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
