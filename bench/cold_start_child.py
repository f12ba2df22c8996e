"""One cold start, in a fresh interpreter: ``python -m bench.cold_start_child campus|minimal mock|server SCENE``.

Started by bench/cold_start.py (see its docstring). Before the timer starts it imports only the
standard library and, for the ``mock`` backend, moto (which starts ``mock_aws`` and creates the
scene's tables and rows). Prints one JSON line: seconds to import the app, to build the test
client, of each first request, in total, and of each request served again (warm).
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MINIMAL_KEY = "k1"


def encode(value: Any) -> Any:
    """DynamoDB JSON with binary values as base64 (``{"B64": ...}``), so a scene fits in JSON."""
    if isinstance(value, (bytes, bytearray)):
        return {"B64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"B64"}:
            return base64.b64decode(value["B64"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def seed(dynamodb: Any, scene: dict[str, Any]) -> None:
    """Create the scene's tables and rows through ``dynamodb`` (a boto3 client)."""
    for parameters in scene["tables"]:
        dynamodb.create_table(**parameters)
    for table, rows in scene["items"].items():
        for row in rows:
            dynamodb.put_item(TableName=table, Item=decode(row))


def cold_start(which: str, backend: str, scene: dict[str, Any]) -> dict[str, Any]:
    mock = None
    if backend == "mock":
        import boto3
        from moto import mock_aws

        mock = mock_aws()
        mock.start()
        seed(boto3.client("dynamodb"), scene)
    sys.path.insert(0, str(ROOT))
    began = time.perf_counter()
    if which == "campus":
        from app import app  # noqa: PLC0415 - the import is what is timed

        imported = time.perf_counter()
        from chalice.test import Client

        client = Client(app, stage_name="local", project_dir=str(ROOT))
        requests = [("GET", "/healthz", {}),
                    ("GET", "/health/reports/today", {"Authorization": f"Bearer {scene['token']}"})]
    else:
        from bench.minimal_app import app  # type: ignore[no-redef]

        imported = time.perf_counter()
        from chalice.test import Client

        client = Client(app, project_dir=str(ROOT / "bench"))
        requests = [("GET", f"/items/{MINIMAL_KEY}", {})]
    ready = time.perf_counter()
    first, statuses = [], []
    for method, path, headers in requests:
        started = time.perf_counter()
        response = client.http.request(method, path, headers=headers)
        first.append(time.perf_counter() - started)
        statuses.append(response.status_code)
    done = time.perf_counter()
    warm = []
    for method, path, headers in requests:
        started = time.perf_counter()
        client.http.request(method, path, headers=headers)
        warm.append(time.perf_counter() - started)
    if mock is not None:
        mock.stop()
    return {"import": imported - began, "client": ready - imported, "first_requests": first, "total": done - began,
            "warm_requests": warm, "statuses": statuses, "modules": len(sys.modules)}


if __name__ == "__main__":
    result = cold_start(sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text()))
    sys.stdout.flush()
    print(json.dumps(result))
