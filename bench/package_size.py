"""The Lambda package: ``make package``'s build (``python -m infra.aws.package``) into a scratch
folder (BENCH_PACKAGE_OUT, default a temporary one, so build/ is left alone), then the zip's size,
its file count, and the largest top-level entries by compressed size.

The build pip-installs the dependencies for the deployed runtime (python3.13, Linux x86_64
wheels), leaves out what the Lambda runtime provides (boto3, botocore, ...) and adds ``app.py``,
``chalicelib/`` and Chalice's runtime modules; it fails over 15 MB.

Run: ``.venv/bin/python -m bench.package_size [--json out.json]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import ROOT, dump, log, machine

LIMIT_MB = 15.0


def command() -> str:
    return "make package  (or: .venv/bin/python -m bench.package_size)"


def measure(out: Path) -> dict[str, Any]:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "infra.aws.package", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - began
    printed = [line for line in done.stdout.splitlines() if line.startswith(("template", "lambda"))]
    zip_path = out / "deployment.zip"
    if done.returncode != 0 or not zip_path.exists():
        return {"ok": False, "seconds": seconds, "error": (done.stderr or done.stdout)[-2000:]}
    by_top: Counter = Counter()
    unpacked = files = 0
    with zipfile.ZipFile(zip_path) as archive:
        for entry in archive.infolist():
            files += 1
            unpacked += entry.file_size
            by_top[entry.filename.split("/", 1)[0]] += entry.compress_size
    size = zip_path.stat().st_size
    return {"ok": True, "seconds": seconds, "zip_bytes": size, "zip_mb": size / 1e6, "limit_mb": LIMIT_MB,
            "unpacked_bytes": unpacked, "files": files, "largest": by_top.most_common(8), "printed": printed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here (default: print them)")
    args = parser.parse_args()
    out = os.environ.get("BENCH_PACKAGE_OUT")
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(Path(out) if out else Path(tmp) / "build")
    figures.update(benchmark="package_size", command=command(), machine=machine())
    log(f"package: {figures.get('zip_mb', 0):.1f} MB zipped in {figures['seconds']:.0f} s" if figures["ok"]
        else f"package: the build failed\n{figures['error']}")
    dump(figures, args.json)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
