"""The resource wing over the local stack: a real HTTP redirect, counted in the statistics."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import requests

from chalicelib.domain.webvpn import WebVpn
from tests.e2e.test_health_flows import token


def test_opening_a_database_redirects_through_the_gateway_and_is_counted(stack):
    student, admin = token(stack, "s004"), token(stack, "admin")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()

    def visits() -> int:
        stats = requests.get(f"{stack.url}/resources/stats", params={"from": today, "to": today}, headers=admin,
                             timeout=10).json()
        return sum(i["visits"] for i in stats["items"] if i["resource_id"] == "sciencedirect")

    before = visits()
    answer = requests.get(f"{stack.url}/resources/sciencedirect/go", headers=student, allow_redirects=False,
                          timeout=10)
    assert answer.status_code == 302, answer.text
    assert answer.headers["Location"] == WebVpn("https://webvpn.sdwu.edu.cn").encode("https://www.sciencedirect.com/")
    assert visits() == before + 1
    listing = requests.get(f"{stack.url}/resources", headers=student, timeout=10).json()
    assert [g["category"] for g in listing["categories"]][0] == "literature"
