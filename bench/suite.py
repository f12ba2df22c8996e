"""``make bench``: every benchmark below, each in a process of its own, then one report section
in bench/results.md (the machine, Python, date and commit; each figure with the command that
reproduces it). Not a test: targets are reported, never enforced; the run fails (exit 1) only
when a benchmark's correctness checks fail (a Scan, a lost report, a failed build) or it crashes,
and the report is written either way.

1. bench/cold_start.py: ``import app`` + first requests in fresh processes, against a minimal
   Chalice app doing one PynamoDB read (median of BENCH_COLD_RUNS, target <= 1.5x);
2. bench/calls_per_operation.py: AWS calls, DynamoDB item sizes and write units per route,
   consumer and job; no Scan anywhere;
3. bench/peak.py: the morning peak through the local stack at BENCH_PEOPLE (default 2,000):
   handler p50/p95, calls per filing, handler / bare PynamoDB put (target <= 2x);
4. bench/health_jobs.py: the reminder (08:00), the counselors' digest (16:00) and the summary
   (20:00) at BENCH_JOB_SIZES (default 16,022 and 100,000 people): time, AWS calls, WeCom parts
   and recipients;
5. bench/package_size.py: the Lambda zip of ``make package``.

BENCH_ONLY (e.g. ``"cold_start peak"``) runs a subset; BENCH_RESULTS names another results file.
Each benchmark's figures (JSON) stay in .local/bench/ (git-ignored) for a closer look;
``python -m bench.suite --render`` prints them as markdown again (times and exit codes aside).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import ROOT, duration, log, machine, ms

RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results.md"))
FIGURES = ROOT / ".local" / "bench"  # each benchmark's JSON of the last run
BENCHMARKS = ["cold_start", "calls_per_operation", "peak", "health_jobs", "package_size"]
SECTION = "## make bench"
INTRO = f"""{SECTION}

`make bench` runs five benchmarks, each in a process of its own, and adds a run here, newest first (the
sizes are make variables: `make bench BENCH_PEOPLE=2000 BENCH_JOB_SIZES="16022 100000" BENCH_COLD_RUNS=7`).
It is not a test: targets are reported, not enforced. Everything runs locally against moto, so absolute
times are moto's and a shared 2-core machine's (noisy); the ratios are taken within one process or one
run, and the AWS call counts and item sizes are what carries over to AWS. Each table says how to
reproduce it; bench/suite.py and the modules it names describe what is measured and how.
"""


# -- running ----------------------------------------------------------------------------------------
def run(name: str, work: Path) -> dict[str, Any]:
    """One benchmark in a fresh process; its figures (JSON), exit code and wall time."""
    out = work / f"{name}.json"
    out.unlink(missing_ok=True)
    log(f"\n== bench.{name} ==")
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", "--json", str(out)], cwd=ROOT)
    seconds = time.perf_counter() - began
    figures = json.loads(out.read_text()) if out.exists() else {}
    log(f"== bench.{name}: exit {done.returncode} after {duration(seconds)} ==")
    return {"name": name, "exit": done.returncode, "seconds": seconds, "figures": figures}


def main() -> int:
    only = os.environ.get("BENCH_ONLY", "").replace(",", " ").split()
    chosen = [b for b in BENCHMARKS if not only or b in only]
    if sys.argv[1:] == ["--render"]:  # the last run's figures as markdown again, recorded nowhere
        saved = {n: json.loads((FIGURES / f"{n}.json").read_text()) for n in chosen
                 if (FIGURES / f"{n}.json").exists()}
        results = {n: {"name": n, "exit": 0, "seconds": f.get("wall_seconds", 0), "figures": f}
                   for n, f in saved.items()}
        print(render(next(iter(saved.values()))["machine"], results, None))
        return 0
    identity = machine()
    began = time.perf_counter()
    FIGURES.mkdir(parents=True, exist_ok=True)
    results = {name: run(name, FIGURES) for name in chosen}
    total = time.perf_counter() - began
    section = render(identity, results, total)
    record(section)
    print(section)
    log(f"make bench: {duration(total)}; written to {RESULTS}")
    return 1 if any(r["exit"] != 0 for r in results.values()) else 0


def record(run_text: str) -> None:
    """Insert the run under this section's introduction (newest first). The section goes right
    after the file's title; bench/import_directory.py appends its rows at the end of the file."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION not in text.split("\n"):
        title_end = text.find("\n") + 1 if text.startswith("# ") else 0
        text = text[:title_end] + "\n" + INTRO + "\n" + text[title_end:].lstrip("\n")
    start = text.index(SECTION + "\n")
    first_run = text.find("\n### ", start)
    next_section = text.find("\n## ", start + len(SECTION))
    at = first_run + 1 if first_run != -1 and (next_section == -1 or first_run < next_section) else (
        next_section + 1 if next_section != -1 else len(text))
    text = text[:at].rstrip("\n") + "\n\n" + run_text.strip("\n") + "\n\n" + text[at:].lstrip("\n")
    RESULTS.write_text(text.rstrip("\n") + "\n")


# -- rendering --------------------------------------------------------------------------------------
def render(identity: dict[str, Any], results: dict[str, dict[str, Any]], total: float | None) -> str:
    """The run's section; ``total`` None: re-rendered from saved figures (the run's times not kept)."""
    took = (f"`make bench` took {duration(total)} "
            f"({', '.join(name + ' ' + duration(r['seconds']) for name, r in results.items())})"
            if total is not None else "re-rendered from .local/bench (the run's times and exit codes not kept)")
    head = (f"### Run {identity['date']}: code {identity['commit']}\n\n"
            f"{identity['platform']} ({identity['machine']}, {identity['cpus']} CPUs), "
            f"{identity['implementation']} {identity['python']}; load average at the start "
            f"{', '.join(str(x) for x in identity['load_average'])}; {took}.")
    headline: list[list[str]] = []
    details: list[str] = []
    for name, result in results.items():
        figures = result["figures"]
        if not figures:
            headline.append([name, f"did not complete (exit {result['exit']})", "",
                             f"`.venv/bin/python -m bench.{name}`"])
            continue
        rows, detail = RENDERERS[name](figures)
        if result["exit"] != 0:
            rows.append([f"{name}: checks", f"FAILED (exit {result['exit']}): see below", "",
                         f"`{figures['command']}`"])
        headline += rows
        details.append(detail)
    table = table_of(["figure", "result", "target", "reproduce"], headline)
    return "\n\n".join([head, table, *details])


def table_of(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: float, target: float) -> str:
    return f"<= {target:g}x: {'met' if value <= target else 'missed'}"


def ops_text(counted: dict[str, int]) -> str:
    return ", ".join(f"{op.split(':', 1)[1]} {n}" if n > 1 else op.split(":", 1)[1] for op, n in counted.items()) or "-"


def size(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else f"{n / 1024:.1f} KB"


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def sizes_text(sizes: list[int]) -> str:
    """``591 B``, or ``12 x 155-171 B`` for several items."""
    if len(sizes) == 1:
        return size(sizes[0])
    low, high = min(sizes), max(sizes)
    return f"{len(sizes)} x " + (size(low) if low == high else f"{size(low)}-{size(high)}")


# cold start
def render_cold_start(f: dict[str, Any]) -> tuple[list[list[str]], str]:
    rows, lines = [], []
    names = {"mock": "in-process moto (boto3/botocore already imported by moto)",
             "server": "moto server (boto3/botocore imported in the timed part, as in Lambda)"}
    for backend, b in f["backends"].items():
        c, m = b["campus"], b["minimal"]
        rows.append([f"Cold start, campus / minimal app, {names[backend]}",
                     f"**{b['ratio']:.2f}x** ({ms(c['cold'])} / {ms(m['cold'])}, median of {c['runs']})",
                     verdict(b["ratio"], f["target"]), f"`{f['command']}`"])
        for label, s, requests in (("campus `app`", c, "`GET /healthz`, `GET /health/reports/today`"),
                                   ("minimal app", m, "`GET /items/k1`")):
            lines.append([backend, label, ms(s["cold"]), ms(s["import"]),
                          " + ".join(ms(x) for x in s["first_requests"]) + f" ({requests})",
                          " + ".join(ms(x) for x in s["warm_requests"]), ms(s["client"]), ms(s["process"]),
                          s["modules"], ", ".join(f"{x * 1000:.0f}" for x in s["colds"])])
    detail = (f"#### Cold start\n\nReproduce: `{f['command']}`. Cold start = `import` + the first requests, in a "
              "fresh process, timed from before the import; the test client's construction (the harness, "
              "not run in Lambda) and the whole process (interpreter start to exit, including moto and the "
              "scene's set-up) are shown apart.\n\n"
              + table_of(["backend", "app", "cold start (median)", "import", "first requests", "same requests warm",
                          "test client", "process", "modules loaded", "each run (ms)"], lines))
    return rows, detail


# calls per operation
def render_calls(f: dict[str, Any]) -> tuple[list[list[str]], str]:
    rows_ = f["rows"]
    requests = [r for r in rows_ if r["kind"] == "request"]
    by_route: dict[str, list[str]] = {}
    for r in requests:
        route = r["operation"].split(" (")[0]
        by_route.setdefault(route, []).append(str(r["calls"]))
    kinds = Counter(r["kind"] for r in rows_)
    heaviest = sorted(requests, key=lambda r: -r["write_units"])[:3]
    headline = [
        ["AWS calls per request (each variant, in the order of the table below)",
         "; ".join(f"{route} {', '.join(calls)}" for route, calls in by_route.items()), "", f"`{f['command']}`"],
        ["DynamoDB write units per request, the heaviest (1 per KB of each item as stored)",
         "; ".join(f"{r['operation']}: {r['write_units']} (largest item {size(r['largest_item_written'])})"
                   for r in heaviest), "items < 400 KB (DynamoDB's limit)", f"`{f['command']}`"],
        ["Scan calls by the application",
         f"**{len(f['application_scans'])}** in {f['application_calls']:,} calls: {kinds['request']} requests, "
         f"{kinds['consumer']} consumer runs, {kinds['job']} runs of every scheduled function"
         + (f": {f['application_scans'][:5]}" if f["application_scans"] else ""), "0", f"`{f['command']}`"],
    ]
    lines = []
    for r in rows_:
        written = "; ".join(f"{t}: {sizes_text(sizes)}" for t, sizes in r["written"].items()) or "-"
        lines.append([r["operation"], r["outcome"], r["calls"], ops_text(r["operations"]), written,
                      r["write_units"], r["items_read"], len(r["scans"]) or "0"])
    detail = (f"#### AWS calls and item sizes per operation\n\nReproduce: `{f['command']}`. In process under "
              f"`mock_aws`, the demo campus with {f['people']:,} generated people, Monday 2026-12-07; each "
              "operation recorded on its own with a botocore hook. Items written: the table (how) and each "
              "item's size as stored afterwards (DynamoDB's accounting: names + values); `refused` = a "
              "conditional write that did not hold (nothing written, still charged). Write units: 1 per KB "
              "started, x2 in a transaction. Items read: what Query/Get/BatchGet returned. Application calls "
              f"made: {', '.join(f['operations_seen'])}. WeCom calls made by the consumers (mocked): "
              f"{', '.join(f'{k} {v}' for k, v in f['wecom_calls'].items()) or 'none'}; messages left on the "
              f"queues: {f['messages_left'] or 'none'}.\n\n"
              + table_of(["operation", "outcome", "AWS calls", "by operation", "DynamoDB items written",
                          "write units", "items read", "Scan"], lines))
    return headline, detail


# peak
def render_peak(f: dict[str, Any]) -> tuple[list[list[str]], str]:
    http, sample = f["http"], f["in_process"]
    handler = http["handler"] or {}
    problems = [f"{k}: {v[:2]}" for k, v in http["problems"].items()] + sample["problems"][:3]
    checks = "FAILED: " + "; ".join(problems) if problems else "all pass"
    headline = [
        [f"Morning peak, {f['filers']:,} filers over HTTP ({f['workers']} workers): handler p50 / p95",
         f"**{ms(handler.get('p50', 0))} / {ms(handler.get('p95', 0))}** (client {ms(http['client']['p50'])} / "
         f"{ms(http['client']['p95'])}; {http['throughput']:.0f} filings/s); checks {checks}", "", f"`{f['command']}`"],
        ["AWS calls per filing (in-process sample)",
         f"normal {len(sample['normal'])} ({', '.join(sample['normal'])}); abnormal {len(sample['abnormal'])}; "
         f"retry {len(sample['retry'])}; Scan {len(sample['scans'])}", "", f"`{f['command']}`"],
        ["Filing handler / bare PynamoDB put, same moto backend (medians)",
         f"**{sample['ratio']:.1f}x** ({ms(sample['handler']['p50'])} / {ms(sample['bare_put']['p50'])})",
         verdict(sample["ratio"], f["target"]), f"`{f['command']}`"],
    ]
    calls = ", ".join(f"{k} {ms(v)}" for k, v in sample["aws_calls_median"].items())
    detail = (
        f"#### Morning peak (bench/health_peak.py's machinery at {f['people']:,} people)\n\nReproduce: "
        f"`{f['command']}` (the full 16,022: `make bench-health`). {f['filers']:,} filers (cast included; "
        f"{f['abnormal']} abnormal, {f['retries']} retried, {f['races']} sent twice at once) filed over HTTP "
        f"against the local stack (started in {http['stack_start_seconds']:.0f} s; login + consent "
        f"{http['login_consent_seconds']:.0f} s, not timed): {http['posts']:,} POSTs in {http['peak_seconds']:.0f} s "
        f"({http['throughput']:.0f}/s). Handler = the app's own `duration_ms` of each request in the stack's "
        f"log; client = wall time seen by the caller (mostly queueing: one process serves everything). Checks: "
        f"{http['stored']['items']:,} stored for {f['filers']:,} filers, {http['stored']['duplicates']} duplicates, "
        f"{http['stored']['lost']} lost; counter rows: {http['counters']['units']} units, "
        f"{http['counters']['reported']:,} reported, {http['counters']['abnormal']} abnormal (= recount: "
        f"{'yes' if 'counters' not in http['problems'] else 'no'}); {http['tracebacks']} tracebacks in the "
        f"stack's log.\n\n"
        + table_of(["latency", "p50", "p95", "p99"],
                   [["handler (app)", ms(handler.get("p50", 0)), ms(handler.get("p95", 0)), ms(handler.get("p99", 0))],
                    ["client", ms(http["client"]["p50"]), ms(http["client"]["p95"]), ms(http["client"]["p99"])]])
        + f"\n\nIn-process sample ({sample['filings']} filings through `chalice.test.Client` under `mock_aws`): a "
        f"normal filing's handler {ms(sample['handler']['p50'])} (p95 {ms(sample['handler']['p95'])}) against a "
        f"bare `save()` of the same item into a table without indexes {ms(sample['bare_put']['p50'])} (p95 "
        f"{ms(sample['bare_put']['p95'])}): {sample['ratio']:.1f}x at the median, {sample['ratio_p95']:.1f}x at "
        f"p95. Of the handler's median, its three AWS calls take {ms(sample['aws_seconds'])} ({calls}; "
        f"medians of those calls in the run) and the rest, {ms(sample['app_seconds'])}, is the app's code "
        f"(Chalice routing, the session token, validation, sealing the answers, logging). Normal filings' call "
        f"sequences: {sample['normal_variants']}."
    )
    return headline, detail


# health jobs
def render_jobs(f: dict[str, Any]) -> tuple[list[list[str]], str]:
    headline, lines = [], []
    for s in f["sizes"]:
        parts = []
        for r in s["runs"]:
            parts.append(f"{r['run'].split('-')[0]} {r['at']}: {duration(r['seconds'])}, {r['calls']:,} AWS calls, "
                         f"{plural(r['parts'], 'WeCom part')} to {r['recipients']:,}")
        headline.append([f"Health jobs at {s['people']:,} people ({s['size']:,} generated + cast)",
                         "; ".join(parts), "", f"`{s['command']}`"])
        for r in s["runs"]:
            delivery = r.get("delivery")
            delivered = (f"{plural(delivery['parts'], 'part')} to {delivery['recipients']:,}: "
                         f"{', '.join(f'{k} {v}' for k, v in delivery['wecom_calls'].items())}; "
                         f"{delivery['calls']:,} AWS calls ({ops_text(delivery['operations'])}) in "
                         f"{duration(delivery['seconds'])}" if delivery else "-")
            lines.append([f"{s['people']:,}", f"`{r['function']}` at {r['at']}",
                          json.dumps({k: v for k, v in r["report"].items() if v}, ensure_ascii=False),
                          duration(r["seconds"]), f"{r['calls']:,}", ops_text(r["operations"]),
                          f"{r['items_read']:,} ({r['bytes_read'] / 1e6:.1f} MB)",
                          f"{r['items_written']:,} ({r['write_units']:,} WCU)",
                          f"{r['parts']:,} ({', '.join(f'{k} {v}' for k, v in r['parts_by_kind'].items()) or '-'})",
                          f"{r['recipients']:,} ({r['distinct_recipients']:,} people; "
                          f"largest part {r['largest_part']:,})",
                          len(r["scans"]) or "0", delivered])
    sizes = "; ".join(f"{s['people']:,} people: loaded in {duration(s['load_seconds'])}"
                      + (f", {s['filings']['filed']:,} filed ({s['filings']['abnormal']} abnormal) in "
                         f"{duration(s['filings']['seconds'])}" if s.get("filings") else "")
                      + f", {duration(s['wall_seconds'])} in all" for s in f["sizes"])
    detail = (
        f"#### Health jobs at campus scale\n\nReproduce: `{f['command']}`. In process under `mock_aws`, the demo "
        f"campus loaded, the jobs invoked as EventBridge does on Monday 2026-11-30 (campus time), runs "
        f"{', '.join(f['runs'])}: the 08:00 reminder before anyone filed (its largest send), then "
        f"{f['filed_share']:.0%} of the people file (through the domain, ~2 % abnormal), then the later slots: "
        f"the counselors' digest at 16:00 (one message per class with someone missing), the summary at 20:00 "
        f"with its recount (one Query per unit whatever the share filed; the items read grow with it). "
        f"{sizes}. WeCom parts: the notification parts the job sent to SQS (from its own SendMessageBatch "
        f"calls, all accepted); each is one WeCom `message/send` of at most 1,000 recipients, as the delivered "
        f"sample shows (the first {'part' if f['deliver_parts'] == 1 else plural(f['deliver_parts'], 'part')} of "
        f"each kind through `send_notifications`, "
        f"WeCom mocked; the access token is cached per process, so only the first delivery fetches one). "
        f"Times are moto's: its index queries walk and sort the whole table for every page, so the roster "
        f"read grows with the square of the campus; the calls and items are what carries over.\n\n"
        + table_of(["people", "run", "job's report", "time", "AWS calls", "by operation", "items read",
                    "items written", "WeCom parts queued", "recipients", "Scan", "delivered sample"], lines))
    return headline, detail


# package
def render_package(f: dict[str, Any]) -> tuple[list[list[str]], str]:
    if not f.get("ok"):
        return ([["Lambda zip (`make package`)", "build FAILED", "<= 15 MB", "`make package`"]],
                f"#### Lambda package\n\nThe build failed:\n\n```\n{f.get('error', '')}\n```")
    headline = [["Lambda zip (`make package`)", f"**{f['zip_mb']:.1f} MB** ({f['files']:,} files, "
                 f"{f['unpacked_bytes'] / 1e6:.1f} MB unpacked)", f"<= {f['limit_mb']:g} MB (the build's limit)",
                 "`make package`"]]
    detail = (f"#### Lambda package\n\nReproduce: `make package` (here built into a scratch folder by "
              f"`.venv/bin/python -m bench.package_size`, {duration(f['seconds'])}). The zip's largest top-level "
              "entries, compressed: " + ", ".join(f"{name} {n / 1e6:.1f} MB" for name, n in f["largest"]) + ".")
    return headline, detail


RENDERERS = {"cold_start": render_cold_start, "calls_per_operation": render_calls, "peak": render_peak,
             "health_jobs": render_jobs, "package_size": render_package}


if __name__ == "__main__":
    raise SystemExit(main())
