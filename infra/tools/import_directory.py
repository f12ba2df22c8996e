"""Stream a CSV file of people of any size through ``POST /admin/directory/import``.

    python -m infra.tools.import_directory people.csv                    # the running local stack
    python -m infra.tools.import_directory people.csv --url https://... --token $TOKEN

The file is read one record at a time and sent in batches of 1000 rows, each row carrying its line
in the file, so errors are reported by file line. A userid seen twice in the file is reported
here and its later rows are not sent (each batch alone could not see it). Batches are retried on
connection errors and 5xx: the import is an upsert, so a retry cannot duplicate anyone.
Exits 0 when every row landed, 1 when some were rejected, 2 when the import could not run.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

BATCH = 1000


@dataclass
class Totals:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)


def batches(stream: TextIO, totals: Totals, size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    """Rows of the CSV in batches, each with its file line; in-file duplicates go to ``totals``."""
    reader = csv.DictReader(stream)
    seen: dict[str, int] = {}
    batch: list[dict[str, Any]] = []
    for record in reader:
        line = reader.line_num
        row: dict[str, Any] = {k: v for k, v in record.items() if k is not None and v not in (None, "")}
        if None in record:
            row["_extra_cells"] = record[None]
        userid = str(row.get("userid", "")).strip().lower()  # WeCom userids ignore case
        if userid and userid in seen:
            totals.errors.append({"line": line, "userid": userid,
                                  "reason": f"duplicate userid (first on line {seen[userid]})"})
            continue
        if userid:
            seen[userid] = line
        batch.append({**row, "line": line})
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def session(token: str) -> requests.Session:
    http = requests.Session()
    retry = Retry(total=5, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=frozenset({"POST"}))
    http.mount("http://", HTTPAdapter(max_retries=retry))
    http.mount("https://", HTTPAdapter(max_retries=retry))
    http.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return http


def run_import(path: Path, url: str, token: str, *, progress: bool = True) -> Totals:
    totals = Totals()
    with path.open(encoding="utf-8-sig", newline="") as counting:
        total_rows = max(0, sum(1 for _ in counting) - 1)
    http = session(token)
    with path.open(encoding="utf-8-sig", newline="") as stream, tqdm(
        total=total_rows, unit="row", disable=not progress, file=sys.stderr
    ) as bar:
        for rows in batches(stream, totals):
            try:
                response = http.post(f"{url}/admin/directory/import", data=json.dumps({"rows": rows}), timeout=120)
            except requests.RequestException as exc:
                response = None
                failure = type(exc).__name__
            if response is not None and response.status_code in (401, 403):
                raise ImportFailed(f"refused: HTTP {response.status_code} {response.text}")
            if response is None or response.status_code != 200:
                # Keep going: later batches may land; these rows are reported for a re-run.
                why = failure if response is None else f"HTTP {response.status_code}"
                totals.errors += [{"line": r["line"], "userid": r.get("userid"), "reason": f"batch not imported ({why})"}
                                  for r in rows]
                bar.update(len(rows))
                continue
            report = response.json()
            totals.created += report["created"]
            totals.updated += report["updated"]
            totals.unchanged += report["unchanged"]
            totals.errors.extend(report["errors"])
            bar.update(len(rows))
    totals.errors.sort(key=lambda e: e["line"])
    return totals


class ImportFailed(RuntimeError):
    """A batch was refused as a whole (authentication, a server fault after retries)."""


def local_stack_login(state_file: Path) -> tuple[str, str]:
    """URL and an it_admin token of the running local stack (dev login as ``admin``)."""
    state = json.loads(state_file.read_text())
    url = state["api_url"]
    answer = requests.post(f"{url}/auth/dev-login", json={"userid": "admin"}, timeout=10)
    answer.raise_for_status()
    return url, answer.json()["token"]


def main(argv: list[str] | None = None) -> int:
    from infra.local.stack import STATE_FILE

    parser = argparse.ArgumentParser(prog="python -m infra.tools.import_directory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--url", help="API base URL (default: the running local stack)")
    parser.add_argument("--token", help="an it_admin session token (default: local dev login as admin)")
    parser.add_argument("--state-file", type=Path, default=STATE_FILE, help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if bool(args.url) != bool(args.token):
        print("give both --url and --token, or neither (the running local stack)", file=sys.stderr)
        return 2
    try:
        if args.url:
            url, token = args.url.rstrip("/"), args.token
        else:
            url, token = local_stack_login(args.state_file)
        started = time.monotonic()
        totals = run_import(args.file, url, token, progress=not args.quiet)
    except (OSError, requests.RequestException, ImportFailed, ValueError) as exc:
        print(f"import failed: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    for error in totals.errors:
        print(f"line {error['line']} ({error.get('userid') or '?'}): {error['reason']}", file=sys.stderr)
    print(f"{totals.created} created, {totals.updated} updated, {totals.unchanged} unchanged, "
          f"{totals.rejected} rejected in {elapsed:.1f}s")
    return 1 if totals.errors else 0


if __name__ == "__main__":
    sys.exit(main())
