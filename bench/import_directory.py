"""Onboarding benchmark: 16,022 generated people imported into a fresh local stack.

Starts the local stack (demo cast only), writes the generated CSV, streams it through the import
CLI's code over HTTP, then checks that every person landed exactly once (the table's item count
and a read-back of every userid). Records the figure in bench/results.md; exits 1 when a person is
lost or the import takes longer than the 60 s target.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3
import requests

from infra.local.demo import CAST, generate_population, write_people_csv
from infra.tools.import_directory import run_import

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = int(os.environ.get("BENCH_PEOPLE", "16022"))
TARGET_SECONDS = 60.0


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv_path = work / "people.csv"
        with csv_path.open("w", encoding="utf-8", newline="") as out:
            write_people_csv(generate_population(PEOPLE)[0], out)
        stack, url, state = start_stack(work)
        try:
            token = requests.post(f"{url}/auth/dev-login", json={"userid": "admin"}, timeout=10).json()["token"]
            started = time.perf_counter()
            totals = run_import(csv_path, url, token, progress=False)
            elapsed = time.perf_counter() - started
            landed = count_people(state["env"], [p.userid for p in generate_population(PEOPLE)[0]])
        finally:
            os.killpg(stack.pid, signal.SIGTERM)
            stack.wait(timeout=10)
    expected = PEOPLE + len(CAST)
    ok = totals.rejected == 0 and totals.created == PEOPLE and landed == (expected, PEOPLE) and elapsed <= TARGET_SECONDS
    line = (f"| {datetime.now(timezone.utc):%Y-%m-%d} | {platform.machine()}, {os.cpu_count()} cores | {PEOPLE} rows "
            f"| {elapsed:.1f} s | {PEOPLE / elapsed:.0f} rows/s | created {totals.created}, rejected "
            f"{totals.rejected}, table holds {landed[0]} (expected {expected}), read back {landed[1]} |")
    print(line)
    record(line)
    return 0 if ok else 1


def start_stack(work: Path) -> tuple[subprocess.Popen, str, dict]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state_file = work / "stack.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", "run", "--port", str(port), "--demo-people", "0",
         "--state-file", str(state_file)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if state_file.exists():
            return process, f"http://127.0.0.1:{port}", json.loads(state_file.read_text())
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the local stack did not start")


def count_people(env: dict[str, str], userids: list[str]) -> tuple[int, int]:
    """(items in the people table, how many of ``userids`` read back), via the moto endpoint."""
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    table = "campus-local-people"
    item_count = dynamodb.describe_table(TableName=table)["Table"]["ItemCount"]
    found = 0
    for start in range(0, len(userids), 100):
        keys = [{"userid": {"S": u}} for u in userids[start:start + 100]]
        request = {table: {"Keys": keys, "ProjectionExpression": "userid"}}
        while request:
            answer = dynamodb.batch_get_item(RequestItems=request)
            found += len(answer["Responses"].get(table, []))
            request = answer.get("UnprocessedKeys") or None
    return item_count, found


def record(line: str) -> None:
    results = ROOT / "bench" / "results.md"
    header = "## Directory import (make bench-import)\n\n| date | machine | size | time | rate | check |\n|---|---|---|---|---|---|\n"
    text = results.read_text() if results.exists() else "# Benchmark results\n\n"
    if "## Directory import" not in text:
        text += "\n" + header
    results.write_text(text.rstrip("\n") + "\n" + line + "\n")


if __name__ == "__main__":
    sys.exit(main())
