"""``make package``: the deployable SAM template and Lambda zip in ``build/``, offline of AWS.

1. Checks that ``infra/aws/resources.json`` matches the code (``python -m infra.aws.template``
   regenerates it).
2. Runs ``chalice package --stage prod --merge-template infra/aws/resources.json build/`` (no AWS
   account is needed: the region only names ARNs in the template).
3. Builds the Lambda zip itself: the dependencies as pip installs them for the deployed runtime
   (:data:`RUNTIME`, Linux x86_64 binary wheels), less what the Lambda runtime already provides
   (boto3, botocore and their own dependencies; PynamoDB pulls botocore in, 17 MB zipped alone),
   plus ``app.py``, ``chalicelib/`` and Chalice's runtime modules. Chalice can only fetch binary wheels for the Python it
   runs on, and this machine's 3.11 is a Lambda runtime closed to new functions.
4. Prints the zip's size and fails if it is over ``--max-mb`` (15).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from infra.aws.template import MERGE_FILE, PROJECT_DIR, current, render

RUNTIME = "python3.13"  # the Lambda runtime deployed (supported until 2029)

CHALICE_RUNTIME = ("__init__.py", "app.py")

# Top-level names in the zip that the runtime ships (boto3 and what it depends on).
RUNTIME_PROVIDED = re.compile(r"^(boto3|botocore|s3transfer|jmespath|dateutil|python_dateutil|six)([-_.].*)?(/|\.py$)")


def build_zip(zip_path: Path, work: Path) -> tuple[int, int]:
    """Write the Lambda zip: the dependencies as pip installs them for :data:`RUNTIME` on Linux
    x86_64 (binary wheels of that ABI), less what the runtime provides, then ``app.py`` and
    ``chalicelib/``. Returns (bytes of everything, bytes written)."""
    site = work / "site-packages"
    shutil.rmtree(site, ignore_errors=True)
    version = RUNTIME.removeprefix("python")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--target", str(site), "--platform", "manylinux2014_x86_64",
                    "--platform", "manylinux_2_28_x86_64", "--implementation", "cp",
                    "--python-version", version, "--only-binary=:all:", "--no-compile", "--no-warn-conflicts",
                    "-r", str(PROJECT_DIR / "requirements.txt")], check=True)
    total = 0
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as target:
        for path in sorted(site.rglob("*")):
            name = path.relative_to(site).as_posix()
            if path.is_dir() or "__pycache__" in name:
                continue
            total += path.stat().st_size
            if not RUNTIME_PROVIDED.match(name):
                target.write(path, name)
        for path in [PROJECT_DIR / "app.py", *sorted((PROJECT_DIR / "chalicelib").rglob("*"))]:
            name = path.relative_to(PROJECT_DIR).as_posix()
            if path.is_file() and "__pycache__" not in name:
                target.write(path, name)
        # The app imports chalice at run time: its two runtime modules go in, as Chalice's own
        # packager puts them (the CLI and deployer are not needed in Lambda).
        import chalice

        for module in CHALICE_RUNTIME:
            target.write(Path(chalice.__file__).with_name(module), f"chalice/{module}")
    return total, zip_path.stat().st_size


def chalice_package(out: Path) -> None:
    """``chalice package`` for the Lambda runtime :data:`RUNTIME`, whatever Python runs it.

    Chalice names the runtime after the Python it runs on; the template must name the deployed
    one. (Its zip is replaced by :func:`build_zip`.)
    """
    from chalice import config as chalice_config
    from chalice.cli import cli

    chalice_config.Config.lambda_python_version = property(lambda self: RUNTIME)  # type: ignore[assignment]
    try:
        cli.main(args=["--project-dir", str(PROJECT_DIR), "package", "--stage", "prod", "--merge-template",
                       str(MERGE_FILE), str(out)], prog_name="chalice", standalone_mode=False, obj={})
    except SystemExit as exc:
        if exc.code:
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build", help="output folder (default build/)")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION") or "cn-north-1")
    parser.add_argument("--max-mb", type=float, default=15.0)
    args = parser.parse_args(argv)
    if MERGE_FILE.read_text(encoding="utf-8") != render(current()):
        print(f"{MERGE_FILE.relative_to(PROJECT_DIR)} is stale: run `python -m infra.aws.template` and commit it",
              file=sys.stderr)
        return 1
    out = Path(args.out).resolve()
    os.environ["AWS_DEFAULT_REGION"] = args.region
    chalice_package(out)
    before, after = build_zip(out / "deployment.zip", out / "work")
    print(f"template  {out / 'sam.json'} (runtime {RUNTIME}, region {args.region})")
    print(f"lambda    {out / 'deployment.zip'}: {after / 1e6:.1f} MB zipped, limit {args.max_mb:g} MB "
          f"(dependencies: {before / 1e6:.1f} MB unpacked before leaving out what the runtime provides)")
    if after > args.max_mb * 1e6:
        print(f"the Lambda zip is over {args.max_mb:g} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
