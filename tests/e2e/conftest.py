"""End-to-end: the local stack runs in its own process and is driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from chalicelib.settings import SECRET_FIELDS
from tests.conftest import PROJECT_DIR, stage_environment
from tests.support.redaction import leaks

STARTUP_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class RunningStack:
    process: subprocess.Popen
    url: str
    state_file: Path
    output: Path

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> float:
        """Signal the stack's process group and return how long it took to exit."""
        started = time.monotonic()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return time.monotonic() - started


def start_stack(tmp: Path, command: list[str] | None = None, port: int | None = None, **env: str) -> RunningStack:
    """Start ``python -m infra.local run`` (or ``command``) and wait until it is ready and answering."""
    port = port or free_port()
    state_file = tmp / "stack.json"
    output = tmp / "stack.log"
    argv = command or [sys.executable, "-m", "infra.local", "run", "--state-file", str(state_file)]
    with output.open("wb") as sink:
        process = subprocess.Popen(
            argv, cwd=PROJECT_DIR, env=clean_env(PORT=str(port), LOCAL_STACK_STATE=str(state_file), **env), stdout=sink, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    stack = RunningStack(process, f"http://127.0.0.1:{port}", state_file, output)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the stack exited with {process.returncode}:\n{stack.log()}")
        try:
            # The state file is written once every part runs; any HTTP answer means the API serves.
            if state_file.exists() and requests.get(f"{stack.url}/healthz", timeout=1).status_code:
                return stack
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    stack.stop(signal.SIGKILL)
    raise AssertionError(f"the stack did not answer within {STARTUP_TIMEOUT}s:\n{stack.log()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The real app's local stack with a small demo population."""
    # Health reports stay open until midnight: the suite runs at any hour on the real clock.
    running = start_stack(tmp_path_factory.mktemp("stack"), DEMO_PEOPLE="50", HEALTH_REPORT_CUTOFF="")
    yield running
    running.stop()
    # Everything the module's flows logged, checked at once: no personal data, token or secret.
    env = stage_environment("local")
    secrets = [env[name.upper()] for name in SECRET_FIELDS if name.upper() in env]
    found = leaks(running.log(), secrets)
    assert found == [], "the stack's log carries what it must not:\n" + "\n".join(found[:20])
