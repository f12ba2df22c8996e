"""The whole local stack in one process: moto, tables and queues, the demo campus, the API, the
SQS pollers and the scheduler. ``python -m infra.local run`` (``make run``) starts it.

Start-up order matters: the moto endpoint goes into the environment before the app is loaded (so
PynamoDB and boto3 resolve it), and the app is loaded the way ``chalice local`` loads it, with the
``local`` stage's variables written into the environment first.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from chalice import Chalice
from chalice.cli.factory import CLIFactory
from chalice.config import Config
from chalice.local import LocalDevServer

from chalicelib.db.directory import DirectoryRepository
from chalicelib.resources import TABLE_MODELS, QueueSpec
from chalicelib.settings import get_settings
from infra.local import aws
from infra.local.demo import LoadCancelled, load_demo_campus, wecom_members
from infra.local.fake_door import FakeDoor
from infra.local.fake_wecom import FakeWeCom
from infra.local.log import log
from infra.local.poller import QueuePoller
from infra.local.scheduler import Scheduler
from infra.local.server import bound_port, make_server

PROJECT_DIR = Path(__file__).resolve().parents[2]
STAGE = "local"
# Where a running stack tells `make fire` how to reach it (overridable so tests can run their own).
STATE_FILE = Path(os.environ.get("LOCAL_STACK_STATE", PROJECT_DIR / ".local" / "stack.json"))


@dataclass
class StackOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    demo_people: int = 1000
    project_dir: Path = PROJECT_DIR
    # Where the queue declarations live, as "module:attribute" (another project's in tests).
    queues_ref: str = "chalicelib.resources:QUEUES"
    state_file: Path | None = STATE_FILE


def load_queue_specs(ref: str) -> tuple[QueueSpec, ...]:
    module_name, _, attribute = ref.partition(":")
    return tuple(getattr(importlib.import_module(module_name), attribute))


def load_app(project_dir: Path, stage: str = STAGE) -> tuple[Chalice, Config]:
    """Load the Chalice app as ``chalice local`` does: stage variables first, then the import."""
    factory = CLIFactory(str(project_dir), environ=os.environ)
    config = factory.create_config_obj(chalice_stage_name=stage)
    return config.chalice_app, config


class StartCancelled(Exception):
    """A stop was requested while the stack was starting."""


@dataclass
class LocalStack:
    options: StackOptions = field(default_factory=StackOptions)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._aws = aws.LocalAws(self.options.host)
        self._threads: list[threading.Thread] = []
        self._server: LocalDevServer | None = None
        self.app: Chalice | None = None
        self.url = ""
        self.pollers: list[QueuePoller] = []
        self.queue_specs: tuple[QueueSpec, ...] = ()
        self.wecom: FakeWeCom | None = None
        self.door: FakeDoor | None = None
        self.scheduler: Scheduler | None = None

    def start(self) -> None:
        """Start every part. A stop requested meanwhile (Ctrl-C) raises :class:`StartCancelled`."""
        env = self._aws.start()
        aws.apply_env({"AWS_DEFAULT_REGION": aws.region(), **env})
        app, config = load_app(self.options.project_dir)
        self.app = app
        settings = get_settings()
        self.queue_specs = load_queue_specs(self.options.queues_ref)
        # The fake WeCom peer stands in for qyapi.weixin.qq.com; set after the stage's variables.
        if settings.wecom_corp_id and settings.wecom_secret:
            self.wecom = FakeWeCom(
                settings.wecom_corp_id, settings.secret("wecom_secret"), host=self.options.host,
                agent_id=settings.wecom_agent_id or "", members=wecom_members(self.options.demo_people),
            )
            env["WECOM_API_BASE"] = self.wecom.start()
            aws.apply_env({"WECOM_API_BASE": env["WECOM_API_BASE"]})

        # The fake door gateway stands in for the door access system (JSON protocol, signed).
        if settings.door_gateway == "json" and settings.door_gateway_secret:
            self.door = FakeDoor(settings.secret("door_gateway_secret"), host=self.options.host)
            env["DOOR_GATEWAY_URL"] = self.door.start()
            aws.apply_env({"DOOR_GATEWAY_URL": env["DOOR_GATEWAY_URL"]})

        aws.create_tables(TABLE_MODELS)
        aws.create_buckets(boto3.client("s3"), aws.bucket_names())
        sqs = boto3.client("sqs")
        consumers = aws.check_consumers_declared(
            app, self.queue_specs, lambda name: config.scope(STAGE, name).lambda_timeout or 60
        )
        queues = aws.create_queues(sqs, self.queue_specs)
        self._check_stop()
        log(f"loading the demo campus ({self.options.demo_people} generated people)...")
        try:
            counts = load_demo_campus(DirectoryRepository(), self.options.demo_people, cancel=self.stop_event)
        except LoadCancelled:
            raise StartCancelled() from None
        log(f"demo campus: {counts.departments} departments, {counts.classes} classes, {counts.people} people")

        region = aws.region()
        prefix = f"{config.app_name}-{settings.stage}"
        for consumer in consumers:
            queue = queues[consumer.queue]
            self.pollers.append(
                QueuePoller(
                    sqs,
                    consumer,
                    app.handler_map[consumer.name],
                    queue_url=queue.url,
                    queue_arn=queue.arn,
                    region=region,
                    function_name=f"{prefix}-{consumer.name}",
                    stop=self.stop_event,
                )
            )
        self.scheduler = Scheduler(app, region=region, rule_prefix=prefix, stop=self.stop_event)

        self._server = make_server(app, config, self.options.host, self.options.port)
        self.url = f"http://{self.options.host}:{bound_port(self._server)}"
        self._spawn("api", self._server.server.serve_forever)
        for poller in self.pollers:
            self._spawn(f"poll-{poller.source.name}", poller.run)
        self._spawn("scheduler", self.scheduler.run)
        self._write_state(env)

    def stop(self, deadline_seconds: float = 4.0) -> None:
        """Stop every part within ``deadline_seconds`` (pollers wait at most 1 s on SQS).

        Threads still busy at the deadline (a consumer mid-batch) are daemons and end with the
        process; their messages reappear in SQS after the visibility timeout, as in AWS.
        """
        deadline = time.monotonic() + deadline_seconds
        self.stop_event.set()
        if self._server is not None:
            self._server.server.shutdown()
            self._server.server.server_close()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.wecom is not None:
            self.wecom.stop()
        if self.door is not None:
            self.door.stop()
        self._aws.stop()
        if self.options.state_file is not None:
            self.options.state_file.unlink(missing_ok=True)

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise StartCancelled()

    def banner(self) -> str:
        assert self.app is not None and self.scheduler is not None
        routes = {path for path in self.app.routes}
        token_help = (
            f"curl -s -X POST {self.url}/auth/dev-login -H 'Content-Type: application/json' "
            f"-d '{{\"userid\": \"fdy01\"}}'"
            if "/auth/dev-login" in routes
            else "no login route yet: every route served today is public"
        )
        jobs = ", ".join(f"{j.name} [{j.schedule.expression}]" for j in self.scheduler.jobs) or "none"
        consumers = ", ".join(f"{p.source.name} <- {p.source.queue}" for p in self.pollers) or "none"
        lines = [
            "",
            "  Campus service platform: local stack",
            f"  API        {self.url}   (stage {get_settings().stage})",
            f"  try        curl {self.url}/healthz   |   {self.url}/openapi.json",
            f"  token      {token_help}",
            f"  AWS        moto at {self._aws.endpoint_url} ({len(self.queue_specs)} queues + DLQs)",
            f"  WeCom      fake at {self.wecom.url}: POST /auth/wecom accepts code-<userid>, once;"
            f" messages sent: {self.wecom.url}/_sent"
            if self.wecom else "  WeCom      not configured for this stage",
            f"  doors      fake gateway at {self.door.url}: passes {self.door.url}/_passes, log {self.door.url}/_log;"
            " gate events: make door-events" if self.door else "  doors      no fake gateway for this stage",
            f"  consumers  {consumers}",
            f"  schedules  {jobs}   (run one now: make fire JOB=<name>)",
            "  stop       Ctrl-C",
            "",
        ]
        return "\n".join(lines)

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _write_state(self, env: dict[str, str]) -> None:
        if self.options.state_file is None:
            return
        self.options.state_file.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "pid": os.getpid(),
            "api_url": self.url,
            "project_dir": str(self.options.project_dir),
            "env": {**env, "AWS_DEFAULT_REGION": aws.region()},
        }
        self.options.state_file.write_text(json.dumps(state, indent=2))
