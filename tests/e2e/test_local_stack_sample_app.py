"""The local stack's SQS pollers and `make fire`, with a test-only app (the platform has no consumer
or job yet): fire a job in another process -> its message -> the poller -> the consumer; partial
batch failures redelivered, poison messages in the DLQ, in real SQS (moto server) time."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import boto3
import pytest

from tests.conftest import PROJECT_DIR, SAMPLE_PROJECT_DIR
from tests.e2e.conftest import clean_env, start_stack


@pytest.fixture(scope="module")
def sample_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    command = [
        sys.executable, "-m", "infra.local", "run", "--state-file", str(tmp / "stack.json"),
        "--project-dir", str(SAMPLE_PROJECT_DIR), "--queues", "tests.support.sample_project.resources:QUEUES",
    ]
    running = start_stack(tmp, command=command, DEMO_PEOPLE="0")
    yield running
    running.stop()


@pytest.fixture
def sqs(sample_stack):
    env = sample_stack.state["env"]
    return boto3.client(
        "sqs", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def collect(sqs, queue: str, want: int, timeout: float = 30) -> list[dict]:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(found) < want and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def test_the_banner_lists_the_consumer_and_the_schedules(sample_stack):
    log = sample_stack.log()
    assert "run_sample_jobs <- sample-jobs" in log
    assert "enqueue_weekday_job [cron(0 9 ? * MON-FRI *)]" in log
    assert "tick_every_five_minutes [rate(5 minutes)]" in log


def test_make_fire_runs_the_job_whose_message_the_stack_then_consumes(sample_stack, sqs):
    result = subprocess.run(
        [sys.executable, "-m", "infra.local", "fire", "enqueue_weekday_job", "--state-file",
         str(sample_stack.state_file)],
        cwd=PROJECT_DIR, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    results = collect(sqs, "sample-results", want=1)
    assert [r["id"].startswith("job-") for r in results] == [True]


def test_partial_failures_are_redelivered_and_poison_messages_end_in_the_dlq(sample_stack, sqs):
    jobs = sqs.get_queue_url(QueueName="sample-jobs")["QueueUrl"]
    for body in ({"id": "fine"}, {"id": "flaky", "fail_times": 1}, {"id": "poison", "fail_times": 99}):
        sqs.send_message(QueueUrl=jobs, MessageBody=json.dumps(body))
    results = collect(sqs, "sample-results", want=2)
    assert sorted((r["id"], r["receive_count"]) for r in results) == [("fine", 1), ("flaky", 2)]
    dead = collect(sqs, "sample-jobs-dlq", want=1)
    assert [d["id"] for d in dead] == ["poison"]
