"""``python -m infra.local run`` starts the local stack; ``python -m infra.local fire JOB`` runs one
scheduled job now against the running stack (``make run`` / ``make fire JOB=...``)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from chalice.local import LambdaContext

from infra.local import aws
from infra.local.lambda_events import rule_arn, scheduled_event
from infra.local.log import log
from infra.local.scheduler import scheduled_sources
from infra.local.stack import PROJECT_DIR, STATE_FILE, LocalStack, StackOptions, StartCancelled, load_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start the local stack")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run.add_argument("--demo-people", type=int, default=int(os.environ.get("DEMO_PEOPLE", "1000")))
    run.add_argument("--state-file", type=Path, default=STATE_FILE)
    run.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help=argparse.SUPPRESS)
    run.add_argument("--queues", default=StackOptions.queues_ref, help=argparse.SUPPRESS)
    fire = commands.add_parser("fire", help="run a scheduled job now against the running stack")
    fire.add_argument("job")
    fire.add_argument("--state-file", type=Path, default=STATE_FILE)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_stack(
            StackOptions(
                host=args.host,
                port=args.port,
                demo_people=args.demo_people,
                state_file=args.state_file,
                project_dir=args.project_dir.resolve(),
                queues_ref=args.queues,
            )
        )
    return fire_job(args.job, args.state_file)


def run_stack(options: StackOptions) -> int:
    stack = LocalStack(options)
    # A process started in the background ignores SIGINT unless it installs its own handlers.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stack.stop_event.set())
    started = time.monotonic()
    try:
        stack.start()
    except StartCancelled:
        log("start cancelled")
        stack.stop()
        return 0
    except Exception:
        stack.stop()
        raise
    print(stack.banner(), flush=True)
    log(f"ready in {time.monotonic() - started:.1f}s")
    stack.stop_event.wait()
    log("stopping")
    stack.stop()
    log("stopped")
    return 0


def fire_job(job: str, state_file: Path) -> int:
    try:
        state = json.loads(state_file.read_text())
        os.kill(int(state["pid"]), 0)
        # A stale file whose pid was reused by another process: the API must answer too.
        _answers(state["api_url"])
    except (OSError, ValueError, KeyError):
        print("The local stack is not running: start it with `make run` first.", file=sys.stderr)
        return 2
    aws.apply_env(state["env"])
    app, config = load_app(Path(state.get("project_dir", PROJECT_DIR)))
    jobs = {source.name: source for source in scheduled_sources(app)}
    if job not in jobs:
        print(f"No scheduled job {job!r}. Jobs: {', '.join(sorted(jobs)) or 'none'}.", file=sys.stderr)
        return 2
    name = f"{config.app_name}-local-{job}"
    event = scheduled_event(rule_arn(name, aws.region()), region=aws.region())
    log(f"firing {job} against {state['api_url']}")
    result = app.handler_map[job](event, LambdaContext(name, memory_size=256, max_runtime_ms=900_000))
    log(f"{job} finished: {result!r}")
    return 0


def _answers(api_url: str) -> None:
    """Return if anything answers HTTP at ``api_url``; raise ``OSError`` otherwise."""
    try:
        urllib.request.urlopen(f"{api_url}/healthz", timeout=3).close()  # noqa: S310 (loopback only)
    except urllib.error.HTTPError:
        return  # an HTTP error is still an answer


if __name__ == "__main__":
    sys.exit(main())
