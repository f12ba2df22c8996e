"""The WeCom client against `responses`: token caching, retries, refusals, no secrets in errors."""

from __future__ import annotations

import importlib.util
import threading
import traceback
from collections.abc import Iterator

import pytest
import requests
import responses
from responses import matchers

from chalicelib.integrations import wecom
from chalicelib.integrations.wecom import WeComClient, WeComError, WeComUnavailable, wecom_client
from chalicelib.settings import SettingsError

API = "https://wecom.test"
TOKEN_URL = f"{API}/cgi-bin/gettoken"
USERINFO_URL = f"{API}/cgi-bin/auth/getuserinfo"
CORP_ID = "ww-corp"
SECRET = "S3cret-app-secret"
CODE = "CODE-login-123"


class MovableClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(clock: MovableClock, sleeps: list[float]) -> WeComClient:
    return WeComClient(API, CORP_ID, SECRET, clock=clock, sleep=sleeps.append)


def token_answer(rsps: responses.RequestsMock, token: str, expires_in: int = 7200) -> None:
    rsps.get(
        TOKEN_URL,
        json={"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in},
        match=[matchers.query_param_matcher({"corpid": CORP_ID, "corpsecret": SECRET})],
    )


def userinfo_answer(rsps: responses.RequestsMock, token: str, body: dict, code: str = CODE) -> None:
    rsps.get(USERINFO_URL, json=body, match=[matchers.query_param_matcher({"access_token": token, "code": code})])


def calls_to(rsps: responses.RequestsMock, url: str) -> int:
    return sum(1 for call in rsps.calls if call.request.url.split("?")[0] == url)


MEMBER = {"errcode": 0, "errmsg": "ok", "userid": "zhangsan", "user_ticket": "ticket"}


# --- access token ---------------------------------------------------------------------------


def test_given_a_fetched_token_when_asked_again_then_it_is_reused_without_calling_wecom(mocked, client):
    token_answer(mocked, "TOKEN-1")

    assert client.access_token() == "TOKEN-1"
    assert client.access_token() == "TOKEN-1"

    assert calls_to(mocked, TOKEN_URL) == 1
    assert mocked.calls[0].request.req_kwargs["timeout"] == (3.0, 5.0)


def test_given_a_token_when_five_minutes_before_expiry_then_a_new_one_is_fetched(mocked, client, clock):
    token_answer(mocked, "TOKEN-1")
    assert client.access_token() == "TOKEN-1"

    clock.now += 7200 - 300 - 1
    assert client.access_token() == "TOKEN-1"
    assert calls_to(mocked, TOKEN_URL) == 1

    mocked.replace(
        responses.GET,
        TOKEN_URL,
        json={"errcode": 0, "errmsg": "ok", "access_token": "TOKEN-2", "expires_in": 7200},
    )
    clock.now += 1
    assert client.access_token() == "TOKEN-2"
    assert calls_to(mocked, TOKEN_URL) == 2


def test_given_concurrent_callers_when_the_token_is_missing_then_wecom_is_asked_once(mocked, client):
    results: list[str] = []
    second_caller: list[threading.Thread] = []

    def gettoken(request):
        # While the first refresh is in flight, a second caller arrives; it must wait for this
        # refresh instead of starting its own. (Its join times out only when the lock works.)
        if not second_caller:
            thread = threading.Thread(target=lambda: results.append(client.access_token()))
            second_caller.append(thread)
            thread.start()
            thread.join(timeout=0.2)
        return 200, {}, '{"errcode": 0, "errmsg": "ok", "access_token": "TOKEN-1", "expires_in": 7200}'

    mocked.add_callback(responses.GET, TOKEN_URL, callback=gettoken)

    assert client.access_token() == "TOKEN-1"
    second_caller[0].join(timeout=5)

    assert results == ["TOKEN-1"]
    assert calls_to(mocked, TOKEN_URL) == 1


@pytest.mark.parametrize(("errcode", "errmsg"), [(40001, "invalid credential"), (40013, "invalid corpid")])
def test_given_wrong_credentials_when_fetching_a_token_then_wecom_error_carries_the_errcode(
    mocked, client, errcode, errmsg
):
    mocked.get(TOKEN_URL, json={"errcode": errcode, "errmsg": errmsg})

    with pytest.raises(WeComError) as raised:
        client.access_token()

    assert type(raised.value) is WeComError
    assert (raised.value.errcode, raised.value.errmsg) == (errcode, errmsg)


# --- login codes ----------------------------------------------------------------------------


def test_given_a_member_code_then_their_userid_is_returned(mocked, client):
    token_answer(mocked, "TOKEN-1")
    userinfo_answer(mocked, "TOKEN-1", MEMBER)

    assert client.userid_for_code(CODE) == "zhangsan"


@pytest.mark.parametrize("errcode", [40014, 42001])
def test_given_wecom_rejects_the_cached_token_then_a_new_one_is_fetched_and_the_call_retried_once(
    mocked, client, errcode
):
    token_answer(mocked, "TOKEN-1")
    assert client.access_token() == "TOKEN-1"
    userinfo_answer(mocked, "TOKEN-1", {"errcode": errcode, "errmsg": "access_token expired"})
    mocked.replace(
        responses.GET,
        TOKEN_URL,
        json={"errcode": 0, "errmsg": "ok", "access_token": "TOKEN-2", "expires_in": 7200},
    )
    userinfo_answer(mocked, "TOKEN-2", MEMBER)

    assert client.userid_for_code(CODE) == "zhangsan"

    assert calls_to(mocked, TOKEN_URL) == 2
    assert calls_to(mocked, USERINFO_URL) == 2
    assert client.access_token() == "TOKEN-2"


def test_given_wecom_rejects_the_fresh_token_too_then_it_is_not_retried_again(mocked, client):
    mocked.get(TOKEN_URL, json={"errcode": 0, "errmsg": "ok", "access_token": "TOKEN-1", "expires_in": 7200})
    mocked.get(USERINFO_URL, json={"errcode": 42001, "errmsg": "access_token expired"})

    with pytest.raises(WeComError) as raised:
        client.userid_for_code(CODE)

    assert raised.value.errcode == 42001
    assert calls_to(mocked, USERINFO_URL) == 2
    # The rejected token is not kept: the next caller fetches a fresh one.
    client.access_token()
    assert calls_to(mocked, TOKEN_URL) == 3


def test_given_an_invalid_or_used_code_then_none(mocked, client):
    token_answer(mocked, "TOKEN-1")
    userinfo_answer(mocked, "TOKEN-1", {"errcode": 40029, "errmsg": "invalid code"})

    assert client.userid_for_code(CODE) is None


def test_given_a_visitor_who_is_not_a_member_then_none(mocked, client):
    token_answer(mocked, "TOKEN-1")
    userinfo_answer(mocked, "TOKEN-1", {"errcode": 0, "errmsg": "ok", "openid": "o-1", "external_userid": "wm-1"})

    assert client.userid_for_code(CODE) is None


def test_given_an_empty_code_then_none_without_calling_wecom(mocked, client):
    assert client.userid_for_code("") is None
    assert len(mocked.calls) == 0


def test_given_another_refusal_then_wecom_error_not_unavailable(mocked, client):
    token_answer(mocked, "TOKEN-1")
    userinfo_answer(mocked, "TOKEN-1", {"errcode": 50001, "errmsg": "redirect_url not authorised"})

    with pytest.raises(WeComError) as raised:
        client.userid_for_code(CODE)

    assert type(raised.value) is WeComError
    assert raised.value.errcode == 50001


# --- busy, rate-limited, unreachable --------------------------------------------------------


def test_given_wecom_is_busy_once_then_the_call_is_retried_after_a_pause(mocked, client, sleeps):
    token_answer(mocked, "TOKEN-1")
    mocked.get(USERINFO_URL, json={"errcode": -1, "errmsg": "system busy"})
    userinfo_answer(mocked, "TOKEN-1", MEMBER)

    assert client.userid_for_code(CODE) == "zhangsan"
    assert sleeps == [0.2]


@pytest.mark.parametrize("errcode", [-1, 45009])
def test_given_wecom_stays_busy_or_rate_limited_then_unavailable_after_three_tries(
    mocked, client, sleeps, errcode
):
    token_answer(mocked, "TOKEN-1")
    mocked.get(USERINFO_URL, json={"errcode": errcode, "errmsg": "busy"})

    with pytest.raises(WeComUnavailable) as raised:
        client.userid_for_code(CODE)

    assert raised.value.errcode == errcode
    assert calls_to(mocked, USERINFO_URL) == 3
    assert sleeps == [0.2, 0.5]


def test_given_gettoken_is_busy_then_it_is_retried_too(mocked, client, sleeps):
    mocked.get(TOKEN_URL, json={"errcode": -1, "errmsg": "system busy"})
    token_answer(mocked, "TOKEN-1")

    assert client.access_token() == "TOKEN-1"
    assert sleeps == [0.2]


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "body": "oops"},
        {"status": 503, "json": {"errcode": 0}},
        {"body": requests.ConnectionError("connection refused")},
        {"body": requests.ConnectTimeout("connect timed out")},
        {"body": requests.ReadTimeout("read timed out")},
    ],
    ids=["http-500", "http-503", "connection-error", "connect-timeout", "read-timeout"],
)
def test_given_wecom_fails_or_is_unreachable_then_unavailable_without_retrying(mocked, client, sleeps, failure):
    token_answer(mocked, "TOKEN-1")
    mocked.get(USERINFO_URL, **failure)

    with pytest.raises(WeComUnavailable) as raised:
        client.userid_for_code(CODE)

    assert raised.value.errcode == -1
    # A timed-out call may have used the one-shot code: repeating it could only say 40029.
    assert calls_to(mocked, USERINFO_URL) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "answer",
    [{"status": 200, "body": "<html>gateway</html>"}, {"status": 404, "json": {"error": "no"}}, {"json": [1]}],
    ids=["html", "http-404", "not-an-object"],
)
def test_given_an_answer_that_is_not_wecom_json_then_wecom_error(mocked, client, answer):
    mocked.get(TOKEN_URL, **answer)

    with pytest.raises(WeComError) as raised:
        client.access_token()

    assert type(raised.value) is WeComError
    assert raised.value.errcode == -1


# --- secrets stay out of errors ---------------------------------------------------------------


def rendered(exc: BaseException) -> str:
    """Everything a log line with a traceback would show."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(getattr(exc, "errmsg", ""))


def test_given_wecom_echoes_the_code_and_token_then_the_error_does_not(mocked, client):
    token_answer(mocked, "TOKEN-1")
    userinfo_answer(mocked, "TOKEN-1", {"errcode": 60020, "errmsg": f"not allow, code {CODE} token TOKEN-1"})

    with pytest.raises(WeComError) as raised:
        client.userid_for_code(CODE)

    text = rendered(raised.value)
    assert raised.value.errcode == 60020
    assert CODE not in text and "TOKEN-1" not in text
    assert "***" in raised.value.errmsg


def test_given_a_transport_error_quoting_the_url_then_no_secret_reaches_the_error(mocked, client):
    # requests' own messages quote the whole URL, query string included.
    leaky = requests.ConnectionError(f"Max retries exceeded with url: {TOKEN_URL}?corpsecret={SECRET}")
    mocked.get(TOKEN_URL, body=leaky)

    with pytest.raises(WeComUnavailable) as raised:
        client.access_token()

    assert SECRET not in rendered(raised.value)
    assert "ConnectionError" in str(raised.value)


def test_given_wecom_echoes_the_secret_on_gettoken_then_the_error_does_not(mocked, client):
    mocked.get(TOKEN_URL, json={"errcode": 40001, "errmsg": f"invalid credential {SECRET}"})

    with pytest.raises(WeComError) as raised:
        client.access_token()

    assert SECRET not in rendered(raised.value)
    assert SECRET not in repr(client)


# --- the lazy getter ------------------------------------------------------------------------


@pytest.fixture
def wecom_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("STAGE", "local")
    monkeypatch.setenv("TABLE_PREFIX", "x-")
    monkeypatch.setenv("WECOM_CORP_ID", CORP_ID)
    monkeypatch.setenv("WECOM_SECRET", SECRET)
    monkeypatch.delenv("WECOM_API_BASE", raising=False)
    # Start from an empty cache; monkeypatch restores whatever another test left.
    monkeypatch.setattr(wecom, "_client", None)
    monkeypatch.setattr(wecom, "_session", None)
    return monkeypatch


def test_given_the_same_settings_then_the_same_client_is_returned(wecom_env):
    first = wecom_client()

    assert wecom_client() is first
    assert first._api_base == "https://qyapi.weixin.qq.com"
    assert first._corp_id == CORP_ID


def test_given_the_wecom_settings_change_then_a_new_client_shares_the_session(wecom_env):
    first = wecom_client()

    wecom_env.setenv("WECOM_SECRET", "rotated-secret")
    second = wecom_client()
    wecom_env.setenv("WECOM_API_BASE", API)
    third = wecom_client()

    assert len({id(first), id(second), id(third)}) == 3
    assert second._secret == "rotated-secret" and third._api_base == API
    assert first._session is second._session is third._session


def test_given_an_unrelated_setting_changes_then_the_client_is_kept(wecom_env):
    first = wecom_client()

    wecom_env.setenv("SESSION_TTL_MINUTES", "60")

    assert wecom_client() is first


@pytest.mark.parametrize("missing", ["WECOM_CORP_ID", "WECOM_SECRET"])
def test_given_a_missing_wecom_setting_then_settings_error_names_it(wecom_env, missing):
    wecom_env.delenv(missing)

    with pytest.raises(SettingsError) as raised:
        wecom_client()

    assert missing in str(raised.value)
    assert SECRET not in str(raised.value)


def test_importing_the_module_builds_nothing_and_reads_no_settings(monkeypatch):
    # Given no configuration at all (a settings read would raise) and a counted Session
    for name in ("STAGE", "TABLE_PREFIX", "WECOM_CORP_ID", "WECOM_SECRET"):
        monkeypatch.delenv(name, raising=False)
    sessions: list[object] = []
    monkeypatch.setattr(requests, "Session", lambda: sessions.append(1) or object())

    # When a fresh copy of the module is imported
    spec = importlib.util.spec_from_file_location("fresh_wecom", wecom.__file__)
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)

    # Then nothing was built, and the first use is what reads the settings
    assert fresh._client is None and fresh._session is None and sessions == []
    with pytest.raises(SettingsError):
        fresh.wecom_client()
