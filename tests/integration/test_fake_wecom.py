"""The real WeCom client against the fake WeCom peer over loopback HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from chalicelib.integrations.wecom import WeComClient, WeComError, WeComUnavailable
from infra.local.fake_wecom import FakeWeCom

CORP_ID = "ww-fake-corp"
SECRET = "fake-app-secret"


@pytest.fixture
def fake() -> Iterator[FakeWeCom]:
    with FakeWeCom(CORP_ID, SECRET) as peer:
        yield peer


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake: FakeWeCom, sleeps: list[float]) -> WeComClient:
    return WeComClient(fake.url, CORP_ID, SECRET, sleep=sleeps.append)


def paths(fake: FakeWeCom) -> list[str]:
    return [path for path, _ in fake.calls]


def test_given_a_login_code_then_it_signs_the_member_in_once(fake, client):
    assert client.userid_for_code("code-zhangsan") == "zhangsan"
    assert client.userid_for_code("code-zhangsan") is None  # WeCom: a code works once
    assert client.userid_for_code("not-a-code") is None

    # One token served all three calls, and no secret or token value was recorded.
    assert paths(fake) == ["/cgi-bin/gettoken"] + ["/cgi-bin/auth/getuserinfo"] * 3
    assert fake.calls[0][1] == {"corpid": CORP_ID, "corpsecret": "***"}
    assert fake.calls[1][1] == {"access_token": "***", "code": "code-zhangsan"}
    assert SECRET not in repr(fake.calls) and client.access_token() not in repr(fake.calls)


def test_given_a_wrong_secret_then_wecom_error_40001(fake):
    client = WeComClient(fake.url, CORP_ID, "wrong-secret")

    with pytest.raises(WeComError) as raised:
        client.userid_for_code("code-zhangsan")

    assert raised.value.errcode == 40001
    assert "wrong-secret" not in str(raised.value)


def test_given_a_wrong_corp_id_then_wecom_error_40013(fake):
    with pytest.raises(WeComError) as raised:
        WeComClient(fake.url, "ww-other", SECRET).access_token()

    assert raised.value.errcode == 40013


def test_given_tokens_expire_midway_then_the_client_refreshes_transparently(fake, client):
    assert client.userid_for_code("code-alice") == "alice"
    old_token = client.access_token()

    fake.expire_tokens()

    assert client.userid_for_code("code-bob") == "bob"
    assert client.access_token() != old_token
    assert paths(fake) == [
        "/cgi-bin/gettoken",
        "/cgi-bin/auth/getuserinfo",
        "/cgi-bin/auth/getuserinfo",  # answered 42001
        "/cgi-bin/gettoken",
        "/cgi-bin/auth/getuserinfo",
    ]


def test_given_wecom_is_busy_once_then_the_call_is_retried_and_succeeds(fake, client, sleeps):
    client.access_token()
    fake.fail_next(1, -1)

    assert client.userid_for_code("code-zhangsan") == "zhangsan"
    assert sleeps == [0.2]
    assert paths(fake)[-2:] == ["/cgi-bin/auth/getuserinfo"] * 2


def test_given_wecom_stays_rate_limited_then_unavailable_and_the_code_is_still_good(fake, client, sleeps):
    client.access_token()
    fake.fail_next(3, 45009)

    with pytest.raises(WeComUnavailable) as raised:
        client.userid_for_code("code-zhangsan")

    assert raised.value.errcode == 45009
    assert sleeps == [0.2, 0.5]
    # Refused calls did nothing: the code can still be used.
    assert client.userid_for_code("code-zhangsan") == "zhangsan"


def test_given_an_unknown_path_then_http_404_json(fake, client):
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{fake.url}/cgi-bin/nope?access_token=t", timeout=5)  # noqa: S310 (loopback)

    assert raised.value.code == 404
    assert raised.value.headers["Content-Type"].startswith("application/json")
    assert json.loads(raised.value.read())["errcode"] == 404
    assert fake.calls[-1] == ("/cgi-bin/nope", {"access_token": "***"})
    with pytest.raises(WeComError) as refused:
        client._get("/cgi-bin/nope", {})
    assert type(refused.value) is WeComError


def test_given_the_fake_is_stopped_then_the_client_sees_wecom_unavailable():
    fake = FakeWeCom(CORP_ID, SECRET)
    url = fake.start()
    fake.stop()
    fake.stop()  # idempotent

    with pytest.raises(WeComUnavailable) as raised:
        WeComClient(url, CORP_ID, SECRET, timeout=(1.0, 1.0)).access_token()

    assert raised.value.errcode == -1
    with pytest.raises(RuntimeError):
        fake.url
