"""``python -m infra.local run`` starts the local stack; ``python -m infra.local fire JOB`` runs one
scheduled job now against the running stack (``make run`` / ``make fire JOB=...``)."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from chalice.local import LambdaContext

from infra.local import aws
from infra.local.fake_wecom import FakeWeCom
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
    fire.add_argument("--at", type=_utc_moment, default=None,
                      help="the event's time (ISO-8601), to run a job for a moved clock")
    commands.add_parser("door-events", help="post signed gate events for demo people (see --help)", add_help=False)
    callback = commands.add_parser("wecom-callback", help="send the running stack a signed WeCom contact change")
    callback.add_argument("change", choices=["create_user", "update_user", "delete_user"])
    callback.add_argument("userid")
    callback.add_argument("--name", help="the new name (update_user / create_user)")
    callback.add_argument("--state-file", type=Path, default=STATE_FILE)
    if (argv if argv is not None else sys.argv[1:])[:1] == ["door-events"]:
        from infra.local import door_events

        return door_events.main((argv if argv is not None else sys.argv[1:])[1:])
    args = parser.parse_args(argv)
    if args.command == "wecom-callback":
        return send_wecom_callback(args.change, args.userid, args.name, args.state_file)
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
    return fire_job(args.job, args.state_file, args.at)


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


def _utc_moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def fire_job(job: str, state_file: Path, at: datetime | None = None) -> int:
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
    event = scheduled_event(rule_arn(name, aws.region()), region=aws.region(), at=at)
    log(f"firing {job} against {state['api_url']}")
    result = app.handler_map[job](event, LambdaContext(name, memory_size=256, max_runtime_ms=900_000))
    log(f"{job} finished: {result!r}")
    return 0


def send_wecom_callback(change: str, userid: str, name: str | None, state_file: Path) -> int:
    """Play WeCom: sign and encrypt a ``change_contact`` event and post it to the running stack."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        print("The local stack is not running: start it with `make run` first.", file=sys.stderr)
        return 2
    config = json.loads((Path(state.get("project_dir", PROJECT_DIR)) / ".chalice" / "config.json").read_text())
    env = {**config.get("environment_variables", {}), **config["stages"]["local"]["environment_variables"]}
    fields = f"<UserID><![CDATA[{userid}]]></UserID>" + (f"<Name><![CDATA[{name}]]></Name>" if name else "")
    event = (f"<xml><ToUserName><![CDATA[{env['WECOM_CORP_ID']}]]></ToUserName><FromUserName><![CDATA[sys]]>"
             f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             f"<Event><![CDATA[change_contact]]></Event><ChangeType><![CDATA[{change}]]></ChangeType>{fields}</xml>")
    peer = FakeWeCom(env["WECOM_CORP_ID"], env["WECOM_SECRET"], agent_id=env.get("WECOM_AGENT_ID", ""))
    answer = peer.send_callback(state["api_url"], event, env["WECOM_TOKEN"], env["WECOM_ENCODING_AES_KEY"])
    log(f"{change} {userid}: HTTP {answer.status_code} {answer.text[:200]}")
    return 0 if answer.status_code == 200 else 1


def _answers(api_url: str) -> None:
    """Return if anything answers HTTP at ``api_url``; raise ``OSError`` otherwise."""
    try:
        urllib.request.urlopen(f"{api_url}/healthz", timeout=3).close()  # noqa: S310 (loopback only)
    except urllib.error.HTTPError:
        return  # an HTTP error is still an answer


if __name__ == "__main__":
    exit_code = main()
    # Everything is stopped and nothing is left to write, but tearing down the interpreter (freeing
    # moto's in-memory AWS and the app's modules) takes another 2-3 s; Ctrl-C should be prompt.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
