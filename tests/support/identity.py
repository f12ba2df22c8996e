"""Helpers for tests that log in: the demo campus loaded, tokens from the local dev login."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chalice.test import Client

from chalicelib.db.directory import DirectoryRepository
from infra.local.demo import load_demo_campus


def load_cast() -> None:
    load_demo_campus(DirectoryRepository(), size=0)


def login(client: Client, userid: str) -> str:
    response = client.http.post("/auth/dev-login", body=json.dumps({"userid": userid}),
                                headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.body
    return json.loads(response.body)["token"]


def call(client: Client, method: str, path: str, token: str | None = None, body: Any = None,
         headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    response = client.http.request(method, path, body=raw or b"", headers=all_headers)
    return response.status_code, json.loads(response.body) if response.body else None
