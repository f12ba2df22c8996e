"""Identity over HTTP on the local stack: WeCom login through the fake peer, the import CLI."""

from __future__ import annotations

import subprocess
import sys

import requests

from tests.conftest import PROJECT_DIR
from tests.e2e.conftest import clean_env


def test_wecom_login_works_once_per_code(stack):
    first = requests.post(f"{stack.url}/auth/wecom", json={"code": "code-s001"}, timeout=10)
    assert first.status_code == 200, first.text
    token = first.json()["token"]
    me = requests.get(f"{stack.url}/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.json()["user"]["userid"] == "s001"
    reused = requests.post(f"{stack.url}/auth/wecom", json={"code": "code-s001"}, timeout=10)
    unknown = requests.post(f"{stack.url}/auth/wecom", json={"code": "forged"}, timeout=10)
    assert (reused.status_code, reused.json()["code"]) == (401, "unauthorized")
    assert (unknown.status_code, unknown.json()["code"]) == (401, "unauthorized")


def test_someone_outside_the_corp_is_refused(stack):
    # WeCom answers a non-member's code with an openid only: no campus identity, no session
    response = requests.post(f"{stack.url}/auth/wecom", json={"code": "code-stranger"}, timeout=10)
    assert (response.status_code, response.json()["code"]) == (401, "unauthorized")


def test_the_import_cli_streams_a_file_and_reports_bad_lines(stack, tmp_path):
    people = tmp_path / "people.csv"
    people.write_text(
        "userid,name,type,department,class_id,roles,counselor_of,dept_head_of,status,card_no,id_number\n"
        "e001,一,student,cs,cs2001,,,,active,,11010519491231002X\n"
        "e002,二,student,cs,cs2001,,,,active,,110105194912310021\n"
        "e001,一again,student,cs,cs2001,,,,active,,\n"
        "e004,四,staff,nowhere,,,,,active,,\n"
        ",五,staff,cs,,,,,active,,\n"
        "e006,六,staff,fl,,,,,active,,\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "infra.tools.import_directory", str(people), "--quiet",
         "--state-file", str(stack.state_file)],
        cwd=PROJECT_DIR, env=clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "2 created, 0 updated, 0 unchanged, 4 rejected" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [e.split(" (")[0] for e in errors] == ["line 3", "line 4", "line 5", "line 6"]
    assert "duplicate userid (first on line 2)" in errors[1]
    assert "110105194912310021" not in result.stderr
    admin = requests.post(f"{stack.url}/auth/dev-login", json={"userid": "admin"}, timeout=10).json()["token"]
    landed = requests.get(f"{stack.url}/admin/people/e001", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert landed.json()["id_number_masked"] == "110105********002X"
