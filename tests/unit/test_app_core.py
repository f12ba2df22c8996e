"""The real app's core: stage settings applied lazily per call, and the JSON log context."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

import pytest
from chalice.test import Client

from chalicelib.observability import logger
from tests.conftest import PROJECT_DIR


@pytest.fixture
def no_stage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STAGE", "TABLE_PREFIX", "CAMPUS_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the app's logger writes while the test runs (it binds stdout when created)."""
    handler = logger.handlers[0]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    level = logger.log_level
    logger.setLevel("INFO")  # whatever an earlier test left: this one reads the INFO access lines
    yield buffer
    logger.setLevel(level)
    handler.setStream(previous)


@pytest.mark.parametrize("stage", ["local", "dev", "prod"])
def test_each_stage_sees_its_own_variables_only_during_the_call(no_stage_env, stage):
    from app import app

    # Given nothing in the environment, when the test client calls with a stage
    with Client(app, stage_name=stage, project_dir=str(PROJECT_DIR)) as client:
        body = json.loads(client.http.get("/healthz").body)
    # Then the view read that stage's config, and the environment is restored after the call
    assert body["stage"] == stage
    assert "STAGE" not in os.environ


def test_each_request_logs_one_json_line_with_request_id_route_and_status(no_stage_env, log_output):
    from app import app

    with Client(app, stage_name="local", project_dir=str(PROJECT_DIR)) as client:
        response = client.http.get("/healthz")
        client.http.get("/openapi.json")
    lines = [json.loads(line) for line in log_output.getvalue().splitlines() if line.strip()]
    access = [line for line in lines if line["message"] == "request"]
    assert [(a["route"], a["status"]) for a in access] == [("GET /healthz", 200), ("GET /openapi.json", 200)]
    assert access[0]["request_id"] == response.headers["X-Request-Id"]
    assert access[0]["service"] == "campus-platform"
    assert access[0]["request_id"] != access[1]["request_id"]
    # And the request's keys do not leak into lines written after it
    assert "request_id" not in logger.thread_safe_get_current_keys()
