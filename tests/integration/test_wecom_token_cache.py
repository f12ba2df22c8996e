"""The WeCom token shared through the kv table (DynamoDB under moto) by two "containers"."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from chalicelib.db.kv import KeyValueModel, KeyValueStore
from chalicelib.integrations.wecom import WeComClient
from infra.local.fake_wecom import FakeWeCom

CORP_ID = "ww-fake-corp"
SECRET = "fake-app-secret"


@pytest.fixture
def fake() -> Iterator[FakeWeCom]:
    with FakeWeCom(CORP_ID, SECRET, members={"zhangsan": {"name": "张三", "department": [1]}}) as peer:
        yield peer


def container(fake: FakeWeCom) -> WeComClient:
    """A client as a separate Lambda container builds it: own memory, the shared kv table."""
    return WeComClient(fake.url, CORP_ID, SECRET, token_cache=KeyValueStore(), sleep=lambda _: None)


def gettoken_calls(fake: FakeWeCom) -> int:
    return sum(1 for path, _ in fake.calls if path == "/cgi-bin/gettoken")


def test_given_two_containers_then_gettoken_is_called_once(fake):
    first, second = container(fake), container(fake)

    assert first.user_get("zhangsan")["name"] == "张三"
    assert second.user_get("zhangsan")["name"] == "张三"

    assert gettoken_calls(fake) == 1
    # One token row, kept until 5 minutes before WeCom's 7200 s; the refresh lock is gone.
    [item] = list(KeyValueModel.scan())
    assert item.key.startswith(f"wecom#token#{CORP_ID}#") and SECRET not in item.key
    assert item.expires_at - time.time() == pytest.approx(7200 - 300, abs=30)
    assert json.loads(item.value)["access_token"] == first.access_token() == second.access_token()


def test_given_wecom_expires_the_token_then_one_container_refreshes_and_the_other_follows(fake):
    first, second = container(fake), container(fake)
    first.access_token()
    second.access_token()

    fake.expire_tokens()
    first.send_message({"touser": "zhangsan", "msgtype": "text", "agentid": 1, "text": {"content": "hi"}})
    second.send_message({"touser": "zhangsan", "msgtype": "text", "agentid": 1, "text": {"content": "hi"}})

    # The first container dropped both layers and fetched a new token; the second, rejected with
    # its stale in-memory token, found the new one in the table instead of calling gettoken.
    assert gettoken_calls(fake) == 2
    assert first.access_token() == second.access_token()
    assert len(fake.sent) == 2
