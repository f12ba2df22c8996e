"""API fuzzing: the app in-process (chalice.test.Client) under moto, driven by schemathesis from the
app's own OpenAPI document. Requests reach the app through a requests adapter, so schemathesis
sends and checks them exactly as it would over HTTP."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from chalice.test import Client
from moto import mock_aws
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict, HTTPResponse

from chalicelib.resources import TABLE_MODELS
from infra.local.atomic import make_dynamodb_writes_atomic
from infra.local.aws import bucket_names, create_buckets, create_tables
from infra.local.fake_wecom import FakeWeCom
from tests.conftest import PROJECT_DIR, stage_environment

BASE_URL = "http://campus.test"


class ChaliceAdapter(BaseAdapter):
    """A requests transport that hands each request to ``chalice.test.Client`` (no socket)."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path = request.path_url
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        answer = self.client.http.request(request.method or "GET", path, headers=dict(request.headers), body=body)
        content = answer.body if isinstance(answer.body, bytes) else str(answer.body or "").encode()
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(answer.headers)
        response.raw = HTTPResponse(body=io.BytesIO(content), headers=HTTPHeaderDict(answer.headers),
                                    status=answer.status_code, version=11, preload_content=False)
        response._content = content
        response.url = request.url or ""
        response.request = request
        response.reason = ""
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def campus(fake_aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[requests.Session]:
    """A fresh moto account with every table, queue and bucket, the demo cast, a fake WeCom, and a
    requests session whose every request goes to the app."""
    from app import app
    from tests.support.hall import open_campus

    env = stage_environment("local")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    make_dynamodb_writes_atomic()
    with FakeWeCom(env["WECOM_CORP_ID"], env["WECOM_SECRET"]) as wecom, mock_aws():
        monkeypatch.setenv("WECOM_API_BASE", wecom.url)
        create_tables(TABLE_MODELS)
        create_buckets(boto3.client("s3"), bucket_names())
        with Client(app, stage_name="local", project_dir=str(PROJECT_DIR)) as client:
            tokens = open_campus(client)
            adapter = ChaliceAdapter(client)
            original = requests.Session.get_adapter

            def get_adapter(self: requests.Session, url: str) -> BaseAdapter:
                # Every session (schemathesis opens its own to replay a request without
                # credentials) reaches the app for BASE_URL, and nothing else.
                return adapter if url.startswith(BASE_URL) else original(self, url)

            monkeypatch.setattr(requests.Session, "get_adapter", get_adapter)
            session = requests.Session()
            session.tokens = tokens  # type: ignore[attr-defined]
            yield session
