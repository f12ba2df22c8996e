"""The real WeCom client against the fake WeCom peer over loopback HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
import requests
import responses

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
        client._call("GET", "/cgi-bin/nope", {})
    assert type(refused.value) is WeComError


def test_given_the_fake_is_stopped_then_the_client_sees_wecom_unavailable():
    fake = FakeWeCom(CORP_ID, SECRET)
    url = fake.start()
    fake.stop()
    fake.stop()  # idempotent

    with pytest.raises(WeComUnavailable) as raised:
        WeComClient(url, CORP_ID, SECRET, timeout=(1.0, 1.0), sleep=lambda _: None).access_token()

    assert raised.value.errcode == -1
    with pytest.raises(RuntimeError):
        fake.url


# --- messages and the directory, with a campus of members -------------------------------------

AGENT_ID = "1000002"
MEMBERS = {
    "zhangsan": {"name": "张三", "department": [2], "status": 1},
    "LiSi": {"name": "李四", "department": [2, 3], "status": 1, "position": "辅导员"},
    "wangwu": {"name": "王五", "department": [3], "status": 5},  # left the corp
    "zhaoliu": {"name": "赵六", "department": [3], "status": 1},
    "sunqi": {"name": "孙七", "department": [4], "status": 1},
}
DEPARTMENTS = [
    {"id": 1, "parentid": 0, "order": 100000000, "name": "学校"},
    {"id": 2, "parentid": 1, "order": 10, "name": "计算机学院"},
    {"id": 3, "parentid": 1, "order": 20, "name": "外语学院"},
    {"id": 4, "parentid": 3, "order": 10, "name": "英语系"},
]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def campus(clock: Clock) -> Iterator[FakeWeCom]:
    with FakeWeCom(CORP_ID, SECRET, agent_id=AGENT_ID, members=MEMBERS, departments=DEPARTMENTS, page_size=2,
                   clock=clock) as peer:
        yield peer


@pytest.fixture
def campus_client(campus: FakeWeCom, sleeps: list[float]) -> WeComClient:
    return WeComClient(campus.url, CORP_ID, SECRET, sleep=sleeps.append)


def message(touser: str, content: str = "明天 8:00 前请完成健康填报") -> dict:
    return {"touser": touser, "msgtype": "text", "agentid": int(AGENT_ID), "text": {"content": content},
            "enable_duplicate_check": 1}


def test_given_a_message_then_the_fake_records_it_and_names_invalid_users(campus, campus_client):
    # Given members, one who left and one unknown id
    payload = message("zhangsan|LISI|wangwu|ghost")

    # When sent
    result = campus_client.send_message(payload)

    # Then WeCom's answer names the undeliverable ones (lower-cased) and the message is recorded
    assert result.invalid_users == {"wangwu", "ghost"}
    assert result.msgid
    assert campus.sent == [{"payload": payload, "msgid": result.msgid, "invaliduser": "wangwu|ghost"}]


def test_given_sent_messages_then_get_sent_shows_them_as_json(campus, campus_client):
    first = campus_client.send_message(message("zhangsan"))
    second = campus_client.send_message(message("lisi", content="请假已批准"))

    with urllib.request.urlopen(f"{campus.url}/_sent", timeout=5) as response:  # noqa: S310 (loopback)
        shown = json.loads(response.read())

    assert [(s["msgid"], s["payload"]["touser"]) for s in shown] == [(first.msgid, "zhangsan"), (second.msgid, "lisi")]
    assert shown[1]["payload"]["text"]["content"] == "请假已批准"
    assert "/_sent" not in paths(campus)


def test_given_no_valid_recipient_then_81013_and_nothing_recorded(campus, campus_client):
    result = campus_client.send_message(message("ghost|wangwu"))

    assert (result.msgid, result.invalid_users) == (None, {"ghost", "wangwu"})
    assert campus.sent == []


@pytest.mark.parametrize(
    ("change", "errcode"), [({"agentid": 999}, 40056), ({"msgtype": "video"}, 40008)], ids=["wrong-agent", "msgtype"]
)
def test_given_a_malformed_message_then_the_fake_refuses_it_like_wecom(campus, campus_client, change, errcode):
    with pytest.raises(WeComError) as raised:
        campus_client.send_message({**message("zhangsan"), **change})

    assert raised.value.errcode == errcode
    assert campus.sent == []


def test_given_more_than_1000_recipients_then_the_fake_refuses_them(campus, campus_client):
    # Our client refuses such a payload itself; the fake holds any other caller to WeCom's limit.
    payload = message("|".join(f"u{i}" for i in range(1001)))

    status, body = campus.answer("/cgi-bin/message/send", {"access_token": campus_client.access_token()}, "POST",
                                 payload)

    assert (status, body["errcode"]) == (200, 40058)
    assert campus.sent == []


def test_given_a_member_gets_more_than_30_a_minute_then_the_fake_records_the_drops(campus, campus_client, clock):
    for n in range(31):
        campus_client.send_message(message("zhangsan|lisi" if n == 30 else "zhangsan"))

    assert [(d["userid"], d["limit"]) for d in campus.dropped] == [("zhangsan", "30/60s")]
    assert campus.dropped[0]["msgid"] == campus.sent[-1]["msgid"]

    clock.now += 60  # a new minute: the member may receive again
    campus_client.send_message(message("zhangsan"))
    assert len(campus.dropped) == 1


def test_given_a_member_gets_more_than_1000_an_hour_then_the_fake_records_the_drops(campus, campus_client, clock):
    # 1001 HTTP round trips would be slow: the same requests straight to the fake's dispatcher.
    token = campus_client.access_token()
    for n in range(1001):
        clock.now = n * 3.0  # 20 a minute: under the minute limit, over the hour's
        status, body = campus.answer("/cgi-bin/message/send", {"access_token": token}, "POST", message("zhaoliu"))
        assert (status, body["errcode"]) == (200, 0)

    assert [(d["userid"], d["limit"]) for d in campus.dropped] == [("zhaoliu", "1000/3600s")]


def test_given_an_outage_then_the_client_retries_and_the_message_goes_out_once(campus, campus_client, sleeps):
    campus_client.access_token()
    campus.outage(2)

    result = campus_client.send_message(message("zhangsan"))

    assert sleeps == [0.2, 0.5]
    assert [s["msgid"] for s in campus.sent] == [result.msgid]


def test_given_a_longer_outage_then_unavailable_and_it_works_once_wecom_recovers(campus, campus_client):
    campus_client.access_token()
    campus.outage(4)

    with pytest.raises(WeComUnavailable) as raised:
        campus_client.send_message(message("zhangsan"))
    assert raised.value.errcode == -1
    assert campus.sent == []

    # The fourth 503 goes to the next request; then WeCom is back.
    result = campus_client.send_message(message("zhangsan"))
    assert [s["msgid"] for s in campus.sent] == [result.msgid]


def test_given_tokens_expire_before_a_send_then_refreshed_once_and_sent(campus, campus_client):
    campus_client.access_token()
    campus.expire_tokens()

    campus_client.send_message(message("zhangsan"))

    assert paths(campus) == ["/cgi-bin/gettoken", "/cgi-bin/message/send", "/cgi-bin/gettoken",
                             "/cgi-bin/message/send"]
    assert len(campus.sent) == 1


def test_department_simplelist_lists_every_department(campus, campus_client):
    assert campus_client.department_simplelist() == [
        {k: d[k] for k in ("id", "parentid", "order")} for d in DEPARTMENTS
    ]


def test_user_list_id_pages_through_every_member_and_department(campus, campus_client):
    rows = list(campus_client.user_list_id())

    assert sorted((r["userid"], r["department"]) for r in rows) == sorted(
        (userid, dept) for userid, member in MEMBERS.items() for dept in member["department"]
    )
    assert paths(campus).count("/cgi-bin/user/list_id") == 3  # 6 rows, 2 a page


def test_user_get_finds_members_case_insensitively_and_none_otherwise(campus, campus_client):
    lisi = campus_client.user_get("lisi")

    assert lisi is not None
    assert (lisi["userid"], lisi["name"], lisi["department"], lisi["status"]) == ("LiSi", "李四", [2, 3], 1)
    assert lisi["main_department"] == 2 and lisi["position"] == "辅导员"
    assert campus_client.user_get("wangwu")["status"] == 5
    assert campus_client.user_get("ghost") is None


def test_given_members_then_a_stranger_code_is_not_a_member(campus, campus_client):
    assert campus_client.userid_for_code("code-zhangsan") == "zhangsan"
    assert campus_client.userid_for_code("code-stranger") is None


# --- callbacks --------------------------------------------------------------------------------

CALLBACK_TOKEN = "callback-token"
AES_KEY = "bG9jYWxvbmx5Y2FsbGJhY2trZXlmb3J0ZXN0czAxMjM"


def test_send_callback_posts_an_envelope_an_independent_implementation_opens(campus):
    from wechatpy.enterprise.crypto import WeChatCrypto

    received: list[requests.PreparedRequest] = []

    def app(request: requests.PreparedRequest):
        received.append(request)
        return 200, {}, "success"

    event = ("<xml><ToUserName><![CDATA[ww-fake-corp]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
             "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             "<Event><![CDATA[change_contact]]></Event><ChangeType><![CDATA[delete_user]]></ChangeType>"
             "<UserID><![CDATA[zhangsan]]></UserID><Name><![CDATA[张三]]></Name></xml>")

    with responses.RequestsMock() as app_side:
        app_side.add_callback(responses.POST, "https://campus.test/api/wecom/callback", callback=app)
        answer = campus.send_callback("https://campus.test/api/", event, CALLBACK_TOKEN, AES_KEY, timestamp=1700000000)

    assert answer.status_code == 200
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(received[0].url).query))
    assert query["timestamp"] == "1700000000" and query["nonce"]
    envelope = received[0].body.decode()
    assert "<ToUserName><![CDATA[ww-fake-corp]]></ToUserName>" in envelope
    assert f"<AgentID><![CDATA[{AGENT_ID}]]></AgentID>" in envelope
    opened = WeChatCrypto(CALLBACK_TOKEN, AES_KEY, CORP_ID).decrypt_message(
        envelope, query["msg_signature"], query["timestamp"], query["nonce"]
    )
    assert opened == event
