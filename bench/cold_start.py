"""Cold start: a fresh Python process importing ``app`` and serving its first requests, against
the same for a minimal Chalice app (bench/minimal_app.py) that does one PynamoDB read.

Each repetition is a new process (``python -m bench.cold_start_child``). Untimed, it sets
the scene: fake credentials, and the tables with the demo cast's rows and a session token of
``s001`` (prepared once by this process: tables described, rows copied, token issued by the
app's own ``/auth/dev-login``). Then, timed from before the import:

* campus: ``import app``, ``chalice.test.Client(app, stage "local")``, ``GET /healthz`` (no AWS),
  then ``GET /health/reports/today`` with the token (authenticated: the caller's person row and
  today's report, two GetItems);
* baseline: ``import bench.minimal_app``, ``chalice.test.Client(app)``, ``GET /items/{key}``
  (one PynamoDB GetItem).

The cold start is the import plus the first requests; building the test client (the harness,
which Lambda does not run) is timed apart. The figure is the median over BENCH_COLD_RUNS
processes of each (default 7, interleaved) and the ratio campus / baseline (target <= 1.5x:
reported, not enforced). The child also times the same requests once more (warm), and the parent
the whole process (interpreter start to exit).

Two backends (BENCH_COLD_BACKENDS, default both):

* ``mock``: the child runs ``moto.mock_aws`` in process with the tables created, as the
  integration tests do. moto itself imports boto3, botocore and requests before the timer
  starts, so their import is outside both figures;
* ``server``: a moto server in this process, the child points at it with ``AWS_ENDPOINT_URL``
  and imports nothing before the timer: boto3/botocore are imported inside the timed part, as in
  a Lambda cold start (plus one loopback HTTP round trip per AWS call).

Run: ``.venv/bin/python -m bench.cold_start [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cold_start_child import MINIMAL_KEY, encode, seed
from bench.common import ROOT, dump, local_stage_env, log, machine

RUNS = int(os.environ.get("BENCH_COLD_RUNS", "7"))
BACKENDS = os.environ.get("BENCH_COLD_BACKENDS", "mock server").replace(",", " ").split()
TARGET = 1.5
USER = "s001"
MINIMAL_TABLE = "bench-minimal"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def command() -> str:
    return f"BENCH_COLD_RUNS={RUNS} BENCH_COLD_BACKENDS={','.join(BACKENDS)} .venv/bin/python -m bench.cold_start"


# -- the scene (prepared once, in this process) ------------------------------------------------------
def prepare_scene() -> dict[str, Any]:
    """Every table the app declares (as CreateTable parameters), the demo cast's rows after
    ``s001`` logged in, ``s001``'s token, and the minimal app's table and row."""
    import boto3

    from bench.common import moto_campus, quiet_stdout, test_client
    from chalicelib.db.directory import DirectoryRepository
    from infra.local.demo import load_demo_campus
    from tests.support.identity import login

    with local_stage_env(), quiet_stdout(), moto_campus():
        load_demo_campus(DirectoryRepository(), size=0)
        with test_client() as client:
            token = login(client, USER)
        dynamodb = boto3.client("dynamodb")
        tables, items = [], {}
        for name in dynamodb.list_tables()["TableNames"]:
            tables.append(create_parameters(dynamodb.describe_table(TableName=name)["Table"]))
            # The benchmark copies the rows (a Scan here is the benchmark's, not the app's).
            rows = [r for page in dynamodb.get_paginator("scan").paginate(TableName=name) for r in page["Items"]]
            if rows:
                items[name] = [encode(r) for r in rows]
    tables.append({"TableName": MINIMAL_TABLE, "BillingMode": "PAY_PER_REQUEST",
                   "AttributeDefinitions": [{"AttributeName": "key", "AttributeType": "S"}],
                   "KeySchema": [{"AttributeName": "key", "KeyType": "HASH"}]})
    items[MINIMAL_TABLE] = [{"key": {"S": MINIMAL_KEY}, "value": {"S": "hello"}}]
    return {"tables": tables, "items": items, "token": token}


def create_parameters(table: dict[str, Any]) -> dict[str, Any]:
    """CreateTable parameters of a described table (keys and indexes; on-demand)."""
    parameters = {"TableName": table["TableName"], "BillingMode": "PAY_PER_REQUEST",
                  "AttributeDefinitions": table["AttributeDefinitions"], "KeySchema": table["KeySchema"]}
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = [{"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
                   for i in table.get(kind) or []]
        if indexes:
            parameters[kind] = indexes
    return parameters


# -- one fresh process (bench/cold_start_child.py) -----------------------------------------------
def run_child(which: str, backend: str, scene_file: str, endpoint: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in {"PYTHONPROFILEIMPORTTIME"}}
    env.update(FAKE_CREDENTIALS)
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.cold_start_child", which, backend, scene_file], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cold-start child {which}/{backend} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process"] = wall
    return result


# -- the benchmark -----------------------------------------------------------------------------------
def cold(sample: dict[str, Any]) -> float:
    """The cold start proper: the import and the first requests (the test client's construction is
    the harness's, not Lambda's, and is reported apart)."""
    return sample["import"] + sum(sample["first_requests"])


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str, index: int | None = None) -> float:
        return statistics.median(s[key][index] if index is not None else s[key] for s in samples)

    requests = len(samples[0]["first_requests"])
    for sample in samples:
        sample["cold"] = cold(sample)
    return {"runs": len(samples), "cold": median("cold"), "total": median("total"), "import": median("import"),
            "client": median("client"), "colds": [s["cold"] for s in samples],
            "first_requests": [median("first_requests", i) for i in range(requests)],
            "warm_requests": [median("warm_requests", i) for i in range(requests)],
            "process": median("process"),
            "statuses": sorted({tuple(s["statuses"]) for s in samples}), "modules": samples[0]["modules"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here (default: print them)")
    args = parser.parse_args()
    log("cold start: preparing the scene...")
    scene = prepare_scene()
    figures: dict[str, Any] = {"benchmark": "cold_start", "command": command(), "machine": machine(), "runs": RUNS,
                               "target": TARGET, "backends": {}}
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        scene_file = Path(tmp) / "scene.json"
        scene_file.write_text(json.dumps(scene))
        for backend in BACKENDS:
            server, endpoint = None, None
            if backend == "server":
                import boto3
                from moto.server import ThreadedMotoServer

                logging.getLogger("werkzeug").setLevel(logging.WARNING)
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                server.start()
                host, port = server.get_host_and_port()
                endpoint = f"http://{host}:{port}"
                with local_stage_env():
                    seed(boto3.client("dynamodb", endpoint_url=endpoint), scene)
            try:
                samples: dict[str, list[dict[str, Any]]] = {"campus": [], "minimal": []}
                for number in range(RUNS):
                    for which in ("campus", "minimal") if number % 2 == 0 else ("minimal", "campus"):
                        samples[which].append(run_child(which, backend, str(scene_file), endpoint))
                    log(f"  {backend} run {number + 1}/{RUNS}: campus {cold(samples['campus'][-1]) * 1000:.0f} ms, "
                        f"minimal {cold(samples['minimal'][-1]) * 1000:.0f} ms")
            finally:
                if server is not None:
                    server.stop()
            campus, minimal = summarise(samples["campus"]), summarise(samples["minimal"])
            ratio = campus["cold"] / minimal["cold"]
            figures["backends"][backend] = {"campus": campus, "minimal": minimal, "ratio": ratio}
            for name, summary, wanted in (("campus", campus, (200, 200)), ("minimal", minimal, (200,))):
                if summary["statuses"] != [wanted]:
                    problems.append(f"{backend}/{name}: statuses {summary['statuses']}, expected {wanted}")
            log(f"cold start ({backend}): campus {campus['cold'] * 1000:.0f} ms vs minimal "
                f"{minimal['cold'] * 1000:.0f} ms = {ratio:.2f}x (target <= {TARGET}x)")
    figures["problems"] = problems
    dump(figures, args.json)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
