"""The real app's local stack, over HTTP, as `make run` starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from tests.conftest import PROJECT_DIR
from tests.e2e.conftest import clean_env, free_port, start_stack


def test_healthz_answers_with_the_local_stage(stack):
    response = requests.get(f"{stack.url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json()["stage"] == "local"
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Request-Id"]


def test_openapi_describes_every_route_of_the_app(stack):
    from app import app

    document = requests.get(f"{stack.url}/openapi.json", timeout=5).json()
    assert document["openapi"] == "3.1.0"
    assert {(p, m.lower()) for p, ms in app.routes.items() for m in ms} == {
        (p, m) for p, ms in document["paths"].items() for m in ms
    }


def test_an_unknown_route_is_a_json_404_in_the_platform_shape(stack):
    for method in ("GET", "POST", "DELETE"):
        response = requests.request(method, f"{stack.url}/no/such/thing?x=1", data=b"{not json", timeout=5)
        assert response.status_code == 404
        assert response.json() == {"code": "not_found", "message": f"No route matches {method} /no/such/thing."}


def test_methods_chalice_does_not_know_get_a_json_405(stack):
    for method in ("TRACE", "CONNECT", "BREW"):
        response = requests.request(method, f"{stack.url}/healthz", timeout=5)
        assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")


def test_a_wrong_method_or_garbage_body_on_a_known_route_is_a_4xx_never_a_500(stack):
    response = requests.post(f"{stack.url}/healthz", data=b"\xff{{", headers={"Content-Type": "application/json"},
                              timeout=5)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_the_banner_tells_the_url_the_stage_and_how_to_get_a_token(stack):
    log = stack.log()
    assert f"API        {stack.url}   (stage local)" in log
    assert f"token      curl -s -X POST {stack.url}/auth/dev-login" in log
    assert "WeCom      fake at http://127.0.0.1:" in log
    assert "doors      fake gateway at http://127.0.0.1:" in log
    assert "demo campus: 9 departments" in log


def test_fire_names_the_jobs_when_the_job_is_unknown(stack):
    result = subprocess.run(
        [sys.executable, "-m", "infra.local", "fire", "no_such_job", "--state-file", str(stack.state_file)],
        cwd=PROJECT_DIR, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert ("No scheduled job 'no_such_job'. Jobs: expire_entry_passes, remind_overdue_returns, resend_health_alerts, "
            "send_daily_health_summary, send_report_reminders, sync_wecom_directory." in result.stderr)


def test_fire_runs_the_directory_sync_against_the_running_stack(stack):
    result = subprocess.run(
        [sys.executable, "-m", "infra.local", "fire", "sync_wecom_directory", "--state-file", str(stack.state_file)],
        cwd=PROJECT_DIR, env=clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sync_wecom_directory finished" in result.stderr
    # The fake WeCom lists exactly the demo campus: nothing to add, change or close
    assert "'people_created': 0, 'people_updated': 0, 'people_left': 0" in result.stderr


def test_fire_without_a_running_stack_says_how_to_start_it(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "infra.local", "fire", "anything", "--state-file", str(tmp_path / "none.json")],
        cwd=PROJECT_DIR, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "make run" in result.stderr


def test_sigterm_and_sigint_stop_everything_within_five_seconds(tmp_path):
    for signum in (signal.SIGTERM, signal.SIGINT):
        running = start_stack(tmp_path, DEMO_PEOPLE="0")
        took = running.stop(signum, timeout=5)
        assert running.process.returncode == 0, running.log()
        assert took < 5
        assert not running.state_file.exists()


def test_a_stop_during_start_up_is_honoured_within_five_seconds(tmp_path):
    # Given a stack loading the full reference population (several seconds of writes)
    port = free_port()
    state_file = tmp_path / "stack.json"
    log_file = tmp_path / "stack.log"
    with log_file.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local", "run", "--state-file", str(state_file)],
            cwd=PROJECT_DIR, env=clean_env(PORT=str(port), DEMO_PEOPLE="16022"), stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "loading the demo campus" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "loading the demo campus" in log_file.read_text()
        # When Ctrl-C arrives mid-load
        signalled = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        # Then the process exits cleanly within five seconds, never having served
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - signalled < 5
        assert "start cancelled" in log_file.read_text()
        assert not state_file.exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_make_run_serves_on_the_port_given(tmp_path):
    # `make run` as the README says, with PORT overriding 8000 (the suite's .venv already exists)
    port = free_port()
    running = start_stack(tmp_path, command=["make", "--no-print-directory", "run", f"PORT={port}", "DEMO_PEOPLE=10"],
                          port=port)
    try:
        assert requests.get(f"{running.url}/openapi.json", timeout=5).status_code == 200
    finally:
        assert running.stop() < 5


def test_make_wecom_callback_plays_wecom_against_the_stack(stack):
    result = subprocess.run(
        [sys.executable, "-m", "infra.local", "wecom-callback", "update_user", "t002", "--name", "马老师（新）",
         "--state-file", str(stack.state_file)],
        cwd=PROJECT_DIR, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "HTTP 200 success" in result.stderr
    # Then the consumer applies it to the directory within seconds
    admin = requests.post(f"{stack.url}/auth/dev-login", json={"userid": "admin"}, timeout=10).json()["token"]
    deadline = time.monotonic() + 30
    name = None
    while time.monotonic() < deadline and name != "马老师（新）":
        name = requests.get(f"{stack.url}/admin/people/t002", headers={"Authorization": f"Bearer {admin}"},
                            timeout=10).json()["name"]
        time.sleep(0.3)
    assert name == "马老师（新）"
