"""The WeCom client against `responses`: token caching, retries, refusals, no secrets in errors."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import traceback
from collections.abc import Iterator

import pytest
import requests
import responses
from responses import matchers

from chalicelib.integrations import wecom
from chalicelib.integrations.wecom import WeComClient, WeComError, WeComUnavailable, wecom_client
from chalicelib.db.kv import KeyValueStore
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


# --- the token shared between containers ------------------------------------------------------


class MemoryTokenCache:
    """A TokenCache in a dict, on the test's clock: what the kv table is to real containers."""

    def __init__(self, clock: MovableClock) -> None:
        self.clock = clock
        self.items: dict[str, tuple[str, float]] = {}
        self.released: list[str] = []

    def get(self, key: str) -> str | None:
        item = self.items.get(key)
        return item[0] if item is not None and item[1] > self.clock() else None

    def put(self, key: str, value: str, ttl_seconds: float) -> None:
        self.items[key] = (value, self.clock() + ttl_seconds)

    def claim(self, key: str, ttl_seconds: float) -> bool:
        if self.get(key) is not None:
            return False
        self.put(key, "held", ttl_seconds)
        return True

    def release(self, key: str) -> None:
        self.released.append(key)
        self.items.pop(key, None)

    def token_keys(self) -> list[str]:
        return [key for key in self.items if not key.endswith("#refresh")]


@pytest.fixture
def cache(clock: MovableClock) -> MemoryTokenCache:
    return MemoryTokenCache(clock)


def container(clock, sleeps, cache, secret: str = SECRET) -> WeComClient:
    """A client as another Lambda container would build it: its own memory, the shared cache."""
    return WeComClient(API, CORP_ID, secret, clock=clock, sleep=sleeps.append, token_cache=cache)


def test_given_two_containers_sharing_a_cache_then_gettoken_is_called_once(mocked, clock, sleeps, cache):
    token_answer(mocked, "TOKEN-1")
    first, second = container(clock, sleeps, cache), container(clock, sleeps, cache)

    assert first.access_token() == "TOKEN-1"
    assert second.access_token() == "TOKEN-1"

    assert calls_to(mocked, TOKEN_URL) == 1
    # Stored under the corp id, until 5 minutes before WeCom's expiry; the lock is given back.
    [key] = cache.token_keys()
    assert key.startswith(f"wecom#token#{CORP_ID}#")
    assert cache.items[key][1] == clock.now + 7200 - 300
    assert SECRET not in key and SECRET not in cache.items[key][0]
    assert cache.released == [f"{key}#refresh"]


def test_given_a_shared_token_then_the_memory_layer_serves_it_without_asking_the_cache_again(
    mocked, clock, sleeps, cache
):
    token_answer(mocked, "TOKEN-1")
    container(clock, sleeps, cache).access_token()
    second = container(clock, sleeps, cache)
    assert second.access_token() == "TOKEN-1"

    cache.items.clear()  # the cache is not read again while the memory layer is fresh

    assert second.access_token() == "TOKEN-1"
    assert calls_to(mocked, TOKEN_URL) == 1


def test_given_the_shared_token_is_near_expiry_then_the_next_container_refreshes_it(mocked, clock, sleeps, cache):
    token_answer(mocked, "TOKEN-1")
    container(clock, sleeps, cache).access_token()

    clock.now += 7200 - 300
    mocked.replace(responses.GET, TOKEN_URL, json={"errcode": 0, "errmsg": "ok", "access_token": "TOKEN-2",
                                                   "expires_in": 7200})

    assert container(clock, sleeps, cache).access_token() == "TOKEN-2"
    assert calls_to(mocked, TOKEN_URL) == 2


def test_given_another_app_of_the_same_corp_then_its_token_is_kept_apart(mocked, clock, sleeps, cache):
    token_answer(mocked, "TOKEN-APP")
    mocked.get(TOKEN_URL, json={"errcode": 0, "errmsg": "ok", "access_token": "TOKEN-CONTACTS", "expires_in": 7200},
               match=[matchers.query_param_matcher({"corpid": CORP_ID, "corpsecret": "contacts-secret"})])

    assert container(clock, sleeps, cache).access_token() == "TOKEN-APP"
    assert container(clock, sleeps, cache, secret="contacts-secret").access_token() == "TOKEN-CONTACTS"
    assert len(cache.token_keys()) == 2


def test_given_another_container_is_refreshing_then_we_wait_for_its_token(mocked, clock, sleeps, cache):
    # Given another container holds the refresh lock and stores its token after two polls
    token_answer(mocked, "TOKEN-OTHER-FETCH")
    waiting = container(clock, sleeps, cache)
    cache.claim(waiting._lock_key, 10)

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            shared = {"access_token": "TOKEN-SHARED", "refresh_at": clock.now + 60}
            cache.put(waiting._cache_key, json.dumps(shared), 60)

    waiting._sleep = sleep

    # When we need a token
    token = waiting.access_token()

    # Then we took theirs, after two short polls, without calling gettoken
    assert token == "TOKEN-SHARED"
    assert sleeps == [0.2, 0.2]
    assert calls_to(mocked, TOKEN_URL) == 0


def test_given_the_lock_holder_never_delivers_then_we_fetch_our_own_after_about_three_seconds(
    mocked, clock, sleeps, cache
):
    token_answer(mocked, "TOKEN-1")
    client = container(clock, sleeps, cache)
    cache.claim(client._lock_key, 10)

    assert client.access_token() == "TOKEN-1"

    assert sleeps == [0.2] * 15
    assert calls_to(mocked, TOKEN_URL) == 1
    assert json.loads(cache.get(client._cache_key))["access_token"] == "TOKEN-1"  # shared for the others


def test_given_gettoken_fails_then_the_refresh_lock_is_released(mocked, clock, sleeps, cache):
    mocked.get(TOKEN_URL, json={"errcode": 40001, "errmsg": "invalid credential"})
    client = container(clock, sleeps, cache)

    with pytest.raises(WeComError):
        client.access_token()

    assert cache.get(client._lock_key) is None


@pytest.mark.parametrize("garbage", ["not json", '{"access_token": ""}', '{"refresh_at": 1e12}'])
def test_given_an_unreadable_shared_entry_then_it_counts_as_absent(mocked, clock, sleeps, cache, garbage):
    token_answer(mocked, "TOKEN-1")
    client = container(clock, sleeps, cache)
    cache.put(client._cache_key, garbage, 600)

    assert client.access_token() == "TOKEN-1"


@pytest.mark.parametrize("errcode", [40014, 42001])
def test_given_the_shared_token_is_rejected_then_both_layers_are_dropped_and_refreshed_once(
    mocked, clock, sleeps, cache, errcode
):
    token_answer(mocked, "TOKEN-1")
    first, second = container(clock, sleeps, cache), container(clock, sleeps, cache)
    first.access_token()
    second.access_token()
    mocked.replace(responses.GET, TOKEN_URL, json={"errcode": 0, "errmsg": "ok", "access_token": "TOKEN-2",
                                                   "expires_in": 7200})
    userinfo_answer(mocked, "TOKEN-1", {"errcode": errcode, "errmsg": "access_token expired"})
    userinfo_answer(mocked, "TOKEN-2", MEMBER)

    # When WeCom rejects the token the first container uses
    assert first.userid_for_code(CODE) == "zhangsan"

    # Then it fetched one new token and shared it; the second container, rejected too, takes it
    assert json.loads(cache.get(first._cache_key))["access_token"] == "TOKEN-2"
    assert second.userid_for_code(CODE) == "zhangsan"
    assert calls_to(mocked, TOKEN_URL) == 2


# --- message/send -----------------------------------------------------------------------------

SEND_URL = f"{API}/cgi-bin/message/send"
CONTENT = "体温异常提醒: 张三 38.5"
PAYLOAD = {"touser": "zhangsan|Ghost|lisi", "msgtype": "text", "agentid": 1000002, "text": {"content": CONTENT},
           "enable_duplicate_check": 1}


def send_answer(rsps: responses.RequestsMock, body: dict, token: str = "TOKEN-1") -> None:
    rsps.post(SEND_URL, json=body, match=[matchers.query_param_matcher({"access_token": token})])


def test_given_a_message_then_the_payload_is_posted_and_invalid_users_parsed(mocked, client):
    token_answer(mocked, "TOKEN-1")
    send_answer(mocked, {"errcode": 0, "errmsg": "ok", "invaliduser": "ghost|lisi", "invalidparty": "",
                         "invalidtag": "", "unlicenseduser": "", "msgid": "MSG-1", "response_code": "rc"})

    result = client.send_message(PAYLOAD)

    assert result == wecom.SendResult(msgid="MSG-1", invalid_users=frozenset({"ghost", "lisi"}))
    request = mocked.calls[-1].request
    assert request.method == "POST" and json.loads(request.body) == PAYLOAD


def test_given_every_recipient_is_valid_then_no_invalid_users(mocked, client):
    token_answer(mocked, "TOKEN-1")
    send_answer(mocked, {"errcode": 0, "errmsg": "ok", "msgid": "MSG-1"})

    assert client.send_message(PAYLOAD) == wecom.SendResult(msgid="MSG-1", invalid_users=frozenset())


def test_given_unlicensed_members_then_they_count_as_invalid(mocked, client):
    token_answer(mocked, "TOKEN-1")
    send_answer(mocked, {"errcode": 0, "errmsg": "ok", "invaliduser": "", "unlicenseduser": "lisi", "msgid": "M"})

    assert client.send_message(PAYLOAD).invalid_users == {"lisi"}


def test_given_no_valid_recipient_then_81013_is_a_result_with_every_touser_invalid(mocked, client):
    token_answer(mocked, "TOKEN-1")
    send_answer(mocked, {"errcode": 81013, "errmsg": "user & party & tag all invalid"})

    result = client.send_message(PAYLOAD)

    assert result.msgid is None
    assert result.invalid_users == {"zhangsan", "ghost", "lisi"}


def test_given_more_than_1000_recipients_then_value_error_without_calling_wecom(mocked, client):
    with pytest.raises(ValueError):
        client.send_message({**PAYLOAD, "touser": "|".join(f"u{i}" for i in range(1001))})

    assert len(mocked.calls) == 0


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
def test_given_send_is_busy_then_retried_and_unavailable_after_three_tries(mocked, client, sleeps, errcode):
    token_answer(mocked, "TOKEN-1")
    send_answer(mocked, {"errcode": errcode, "errmsg": "busy"})

    with pytest.raises(WeComUnavailable) as raised:
        client.send_message(PAYLOAD)

    assert raised.value.errcode == errcode
    assert calls_to(mocked, SEND_URL) == 3
    assert sleeps == [0.2, 0.5]


@pytest.mark.parametrize(
    "failure",
    [{"status": 502, "body": "bad gateway"}, {"body": requests.ConnectionError("refused")},
     {"body": requests.ReadTimeout("read timed out")}],
    ids=["http-502", "connection-error", "read-timeout"],
)
def test_given_send_fails_in_transport_then_retried_briefly(mocked, client, sleeps, failure):
    token_answer(mocked, "TOKEN-1")
    mocked.post(SEND_URL, **failure)
    send_answer(mocked, {"errcode": 0, "errmsg": "ok", "msgid": "MSG-1"})

    assert client.send_message(PAYLOAD).msgid == "MSG-1"
    assert sleeps == [0.2]


def test_given_wecom_stays_down_then_send_is_unavailable(mocked, client, sleeps):
    token_answer(mocked, "TOKEN-1")
    mocked.post(SEND_URL, status=503)

    with pytest.raises(WeComUnavailable) as raised:
        client.send_message(PAYLOAD)

    assert raised.value.errcode == -1
    assert calls_to(mocked, SEND_URL) == 3


def test_given_an_expired_token_on_send_then_refreshed_and_sent_once(mocked, client):
    token_answer(mocked, "TOKEN-1")
    client.access_token()
    send_answer(mocked, {"errcode": 42001, "errmsg": "access_token expired"})
    mocked.replace(responses.GET, TOKEN_URL, json={"errcode": 0, "errmsg": "ok", "access_token": "TOKEN-2",
                                                   "expires_in": 7200})
    send_answer(mocked, {"errcode": 0, "errmsg": "ok", "msgid": "MSG-2"}, token="TOKEN-2")

    assert client.send_message(PAYLOAD).msgid == "MSG-2"
    assert calls_to(mocked, SEND_URL) == 2


def test_given_another_refusal_that_echoes_the_content_then_wecom_error_without_it(mocked, client):
    token_answer(mocked, "TOKEN-1")
    send_answer(mocked, {"errcode": 40008, "errmsg": f"invalid message type near {CONTENT}, token TOKEN-1"})

    with pytest.raises(WeComError) as raised:
        client.send_message(PAYLOAD)

    assert type(raised.value) is WeComError and raised.value.errcode == 40008
    text = rendered(raised.value)
    assert CONTENT not in text and "TOKEN-1" not in text


# --- directory --------------------------------------------------------------------------------

DEPARTMENTS_URL = f"{API}/cgi-bin/department/simplelist"
LIST_ID_URL = f"{API}/cgi-bin/user/list_id"
USER_URL = f"{API}/cgi-bin/user/get"


def test_department_simplelist_returns_wecoms_departments(mocked, client):
    token_answer(mocked, "TOKEN-1")
    departments = [{"id": 1, "parentid": 0, "order": 100000000}, {"id": 2, "parentid": 1, "order": 10}]
    mocked.get(DEPARTMENTS_URL, json={"errcode": 0, "errmsg": "ok", "department_id": departments})

    assert client.department_simplelist() == departments


def test_given_an_answer_without_the_list_then_wecom_error(mocked, client):
    token_answer(mocked, "TOKEN-1")
    mocked.get(DEPARTMENTS_URL, json={"errcode": 0, "errmsg": "ok", "department_id": "nope"})

    with pytest.raises(WeComError):
        client.department_simplelist()


def test_user_list_id_follows_the_cursor_until_it_is_empty(mocked, client):
    token_answer(mocked, "TOKEN-1")
    pages = {
        None: {"next_cursor": "CUR-2",
               "dept_user": [{"userid": "a", "department": 1}, {"userid": "a", "department": 2}]},
        "CUR-2": {"next_cursor": "CUR-3", "dept_user": [{"userid": "b", "department": 2}]},
        "CUR-3": {"next_cursor": "", "dept_user": [{"userid": "c", "department": 3}]},
    }

    def answer(request):
        body = json.loads(request.body)
        assert body["limit"] == 10000
        return 200, {}, json.dumps({"errcode": 0, "errmsg": "ok", **pages[body.get("cursor")]})

    mocked.add_callback(responses.POST, LIST_ID_URL, callback=answer)

    rows = list(client.user_list_id())

    assert [(r["userid"], r["department"]) for r in rows] == [("a", 1), ("a", 2), ("b", 2), ("c", 3)]
    assert [json.loads(c.request.body).get("cursor") for c in mocked.calls if "list_id" in c.request.url] == [
        None, "CUR-2", "CUR-3"]


def test_user_list_id_is_lazy(mocked, client):
    token_answer(mocked, "TOKEN-1")
    mocked.post(LIST_ID_URL, json={"errcode": 0, "errmsg": "ok", "next_cursor": "",
                                   "dept_user": [{"userid": "a", "department": 1}]})

    rows = client.user_list_id()

    assert calls_to(mocked, LIST_ID_URL) == 0
    assert next(rows)["userid"] == "a"


def test_given_the_cursor_does_not_advance_then_wecom_error_not_a_loop(mocked, client):
    token_answer(mocked, "TOKEN-1")
    mocked.post(LIST_ID_URL, json={"errcode": 0, "errmsg": "ok", "next_cursor": "SAME", "dept_user": []})

    with pytest.raises(WeComError):
        list(client.user_list_id())

    assert calls_to(mocked, LIST_ID_URL) == 2


def test_user_get_returns_the_member_without_errcode(mocked, client):
    token_answer(mocked, "TOKEN-1")
    mocked.get(USER_URL, json={"errcode": 0, "errmsg": "ok", "userid": "zhangsan", "name": "张三",
                               "department": [2], "status": 1},
               match=[matchers.query_param_matcher({"access_token": "TOKEN-1", "userid": "zhangsan"})])

    assert client.user_get("zhangsan") == {"userid": "zhangsan", "name": "张三", "department": [2], "status": 1}


def test_user_get_of_an_unknown_userid_is_none(mocked, client):
    token_answer(mocked, "TOKEN-1")
    mocked.get(USER_URL, json={"errcode": 60111, "errmsg": "userid not found"})

    assert client.user_get("ghost") is None
    assert client.user_get("") is None
    assert calls_to(mocked, USER_URL) == 1


def test_user_get_refused_otherwise_is_wecom_error(mocked, client):
    token_answer(mocked, "TOKEN-1")
    mocked.get(USER_URL, json={"errcode": 60011, "errmsg": "no privilege to access/modify contact/party/agent"})

    with pytest.raises(WeComError) as raised:
        client.user_get("zhangsan")

    assert raised.value.errcode == 60011


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
    # Its token is shared with the other containers through the kv table.
    assert isinstance(first._cache, KeyValueStore)


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
    monkeypatch.setitem(sys.modules, "fresh_wecom", fresh)  # dataclasses look their module up
    spec.loader.exec_module(fresh)

    # Then nothing was built, and the first use is what reads the settings
    assert fresh._client is None and fresh._session is None and sessions == []
    with pytest.raises(SettingsError):
        fresh.wecom_client()
