"""Shared plumbing of ``make bench``: the local AWS under moto, a recorder of every AWS call,
DynamoDB item sizes, and the run's identity (machine, Python, date, commit).

Nothing here is timed itself; the benchmarks (bench/cold_start.py, bench/calls_per_operation.py,
bench/peak.py, bench/health_jobs.py, bench/package_size.py) use it, and bench/suite.py writes
their figures into bench/results.md.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ".venv/bin/python"  # how the figures' commands are written (run from the project folder)

_APPLICATION_FILES = (str(ROOT / "chalicelib") + os.sep, str(ROOT / "app.py"))


# -- the run's identity ---------------------------------------------------------------------------
def commit() -> str:
    """The code measured: BENCH_COMMIT, or ``git describe --always --dirty`` (and the full hash)."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                   text=True, check=True, timeout=10).stdout.strip()
        full = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
        return f"{described} ({full})"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "load_average": [round(x, 2) for x in load],
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit()}


def dump(figures: dict[str, Any], path: str | None) -> None:
    """Write a benchmark's figures as JSON to ``path`` (the suite's hand-over), or print them."""
    text = json.dumps(figures, indent=2, ensure_ascii=False, default=str)
    if path:
        Path(path).write_text(text, encoding="utf-8")
    else:
        print(text)


def log(message: str) -> None:
    """Progress, on stderr (stdout carries the app's JSON log lines, silenced while timing)."""
    print(message, file=sys.stderr, flush=True)


# -- the local AWS --------------------------------------------------------------------------------
@contextmanager
def local_stage_env(**extra: str) -> Iterator[None]:
    """The ``local`` stage's variables and fake credentials in ``os.environ``, no endpoint (so
    ``mock_aws`` intercepts), as the integration tests' fixtures set them; restored afterwards."""
    from tests.conftest import stage_environment

    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}:
            del os.environ[name]
    os.environ.update(stage_environment("local"))
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
                      AWS_DEFAULT_REGION="us-east-1", **extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def moto_campus() -> Iterator[None]:
    """Inside :func:`local_stage_env`: a fresh moto account with every table, queue and bucket the
    code declares (as tests/integration/conftest.py and the local stack create them)."""
    import boto3
    from moto import mock_aws

    from chalicelib.resources import QUEUES, TABLE_MODELS
    from infra.local.atomic import make_dynamodb_writes_atomic
    from infra.local.aws import bucket_names, create_buckets, create_queues, create_tables

    make_dynamodb_writes_atomic()
    with mock_aws():
        create_tables(TABLE_MODELS)
        create_buckets(boto3.client("s3"), bucket_names())
        create_queues(boto3.client("sqs"), QUEUES)
        yield


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """The app's JSON log lines go to /dev/null (still written, so their cost stays in the times)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as sink:
        os.dup2(sink.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def test_client() -> Any:
    """``chalice.test.Client`` over the app, the ``local`` stage, this project's config."""
    from chalice.test import Client

    from app import app

    return Client(app, stage_name="local", project_dir=str(ROOT))


# -- recording AWS calls ----------------------------------------------------------------------------
@dataclass
class Call:
    """One AWS API call: who asked (the application or the benchmark), what, and what came back."""

    service: str
    operation: str
    params: dict[str, Any]
    response: dict[str, Any] | None
    application: bool  # a frame of app.py or chalicelib/ on the stack
    seconds: float
    error: str | None = None  # the error code when the call failed (a refused condition, ...)


@dataclass
class Recorder:
    """Every botocore call made while :meth:`recording` is active (boto3 and PynamoDB alike),
    the way tests/support/aws_calls.py records them, plus the responses (to count items read)."""

    calls: list[Call] = field(default_factory=list)

    @contextmanager
    def recording(self) -> Iterator[list[Call]]:
        import botocore.client

        original = botocore.client.BaseClient._make_api_call
        mine: list[Call] = []

        def recording(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            application = _from_application(sys._getframe(1))
            began = time.perf_counter()
            response, error = None, None
            try:
                response = original(client, operation_name, api_params)
                return response
            except Exception as exc:
                error = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
                raise
            finally:
                call = Call(client.meta.service_model.service_name, operation_name, api_params, response,
                            application, time.perf_counter() - began, error)
                mine.append(call)
                self.calls.append(call)

        botocore.client.BaseClient._make_api_call = recording  # type: ignore[method-assign]
        try:
            yield mine
        finally:
            botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]


def _from_application(frame: Any) -> bool:
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(_APPLICATION_FILES):
            return True
        frame = frame.f_back
    return False


def scans(calls: list[Call]) -> list[str]:
    """The Scan calls among ``calls`` (``dynamodb:Scan on <table>``)."""
    return [f"{c.service}:{c.operation} on {c.params.get('TableName')}" for c in calls
            if c.operation in {"Scan", "ParallelScan"}]


def operations(calls: list[Call]) -> Counter:
    """``{"dynamodb:GetItem": 1, ...}`` in the order first made."""
    found: Counter = Counter()
    for call in calls:
        found[f"{call.service}:{call.operation}"] += 1
    return found


def describe_operations(counted: Counter) -> str:
    return ", ".join(f"{op.split(':', 1)[1]} {n}" if n > 1 else op.split(":", 1)[1] for op, n in counted.items())


def items_read(calls: list[Call]) -> tuple[int, int]:
    """(items, bytes) DynamoDB returned to ``calls`` (Query/Scan pages, GetItem, BatchGetItem,
    TransactGetItems), the bytes by :func:`item_size`."""
    items = size = 0
    for call in calls:
        if call.service != "dynamodb" or not call.response:
            continue
        found: list[dict[str, Any]] = []
        if call.operation in {"Query", "Scan"}:
            found = call.response.get("Items", [])
        elif call.operation == "GetItem" and "Item" in call.response:
            found = [call.response["Item"]]
        elif call.operation == "BatchGetItem":
            found = [i for rows in call.response.get("Responses", {}).values() for i in rows]
        elif call.operation == "TransactGetItems":
            found = [r["Item"] for r in call.response.get("Responses", []) if r.get("Item")]
        items += len(found)
        size += sum(item_size(i) for i in found)
    return items, size


# -- DynamoDB item sizes ----------------------------------------------------------------------------
def item_size(item: dict[str, Any]) -> int:
    """Bytes of an item in DynamoDB's accounting (attribute names + values; what write and read
    units are charged on, per KB written and 4 KB read)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, content), = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return _number_size(content)
    if kind == "B":
        return len(content)
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in content)
    if kind == "NS":
        return sum(_number_size(n) for n in content)
    if kind == "BS":
        return sum(len(b) for b in content)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in content)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in content.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def _number_size(text: str) -> int:
    digits = Decimal(text).normalize().as_tuple().digits
    return min(21, math.ceil(len(digits) / 2) + 1)


@dataclass(frozen=True)
class Write:
    """One item write: the table (logical name), how, the item's size as stored afterwards, and
    whether DynamoDB refused it (a condition that did not hold: nothing written, units charged)."""

    table: str
    how: str  # PutItem, UpdateItem, BatchWriteItem, TransactWriteItems/Put|Update|Delete, DeleteItem
    size: int
    transactional: bool
    refused: bool = False

    @property
    def write_units(self) -> int:
        """Write units of a standard table: 1 per KB started, twice that in a transaction (the
        larger of the item before and after counts; the size after is taken here). A refused
        conditional write is charged too."""
        return max(1, math.ceil(self.size / 1024)) * (2 if self.transactional else 1)


def writes(calls: list[Call], prefix: str = "campus-local-") -> list[Write]:
    """Every DynamoDB item write of ``calls``, sized as stored after the last call: a PutItem's
    item as sent; an update's item read back (consistent GetItem, made here, not recorded). A
    write whose condition failed is kept, marked ``refused`` (DynamoDB charges it)."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    found: list[Write] = []

    def stored(table: str, key: dict[str, Any]) -> int:
        answer = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
        return item_size(answer["Item"]) if "Item" in answer else 0

    def name(table: str) -> str:
        return table.removeprefix(prefix)

    for call in calls:
        if call.service != "dynamodb":
            continue
        p = call.params
        refused = call.error in {"ConditionalCheckFailedException", "TransactionCanceledException"}
        if call.error and not refused:
            continue  # throttled or failed: nothing written, retried as another call
        if call.operation == "PutItem":
            found.append(Write(name(p["TableName"]), "PutItem", item_size(p["Item"]), False, refused))
        elif call.operation == "UpdateItem":
            found.append(Write(name(p["TableName"]), "UpdateItem", stored(p["TableName"], p["Key"]), False,
                               refused))
        elif call.operation == "DeleteItem":
            found.append(Write(name(p["TableName"]), "DeleteItem", 0, False, refused))
        elif call.operation == "BatchWriteItem":
            for table, requests in p["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        found.append(Write(name(table), "BatchWriteItem", item_size(request["PutRequest"]["Item"]),
                                           False))
                    else:
                        found.append(Write(name(table), "BatchWriteItem/Delete", 0, False))
        elif call.operation == "TransactWriteItems":
            for entry in p["TransactItems"]:
                (kind, body), = entry.items()
                if kind == "Put":
                    found.append(Write(name(body["TableName"]), "TransactWriteItems/Put", item_size(body["Item"]),
                                       True, refused))
                elif kind == "Update":
                    found.append(Write(name(body["TableName"]), "TransactWriteItems/Update",
                                       stored(body["TableName"], body["Key"]), True, refused))
                elif kind == "Delete":
                    found.append(Write(name(body["TableName"]), "TransactWriteItems/Delete", 0, True, refused))
                # a ConditionCheck writes nothing
    return found


# -- numbers ----------------------------------------------------------------------------------------
def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def duration(seconds: float) -> str:
    if seconds < 1:
        return ms(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
