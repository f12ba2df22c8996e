"""A FAKE WeCom (企业微信) API peer for the local stack and tests; never used by production code.

It answers the calls the platform makes the way WeCom does (HTTP 200, JSON with ``errcode``/
``errmsg``), on loopback, in a daemon thread. Every call but ``gettoken`` needs the current
``access_token`` (an expired one gets 42001, an unknown one 40014):

* ``GET /cgi-bin/gettoken?corpid=&corpsecret=``: the right pair gets a random access token valid
  for 7200 s (the same one until :meth:`FakeWeCom.expire_tokens`); a wrong corp id gets 40013, a
  wrong secret 40001.
* ``GET /cgi-bin/auth/getuserinfo?code=``: a code ``code-<userid>`` signs in ``<userid>`` once
  (reused or other codes: 40029). When ``members`` were given, anyone else is answered as a
  non-member (an ``openid``, no ``userid``).
* ``POST /cgi-bin/message/send``: recorded in ``sent`` (payload, msgid, invaliduser). When
  ``members`` were given, ``invaliduser`` lists the ``touser`` ids that are not members or have
  left or are disabled (lower-cased, like WeCom), and 81013 answers a message with no valid
  recipient (not recorded). More than 1000 ``touser`` ids: 40058. A member's deliveries beyond 30
  a minute or 1000 an hour from one app are accepted but recorded in ``dropped``: real WeCom
  silently discards them.
* ``GET /cgi-bin/department/simplelist[?id=]``: the departments (or one's subtree; unknown: 60123).
* ``POST /cgi-bin/user/list_id`` ``{"cursor", "limit"}``: one ``{"userid", "department"}`` row per
  member and department, ``page_size`` rows at most per page, ``next_cursor`` "" on the last.
* ``GET /cgi-bin/user/get?userid=``: the member (case-insensitive), or 60111.
* ``GET /_sent``: ``sent`` as JSON, for people and e2e tests (not a WeCom API).

Test hooks: :meth:`~FakeWeCom.outage`, :meth:`~FakeWeCom.expire_tokens`, :meth:`~FakeWeCom.fail_next`,
:meth:`~FakeWeCom.send_callback`, and ``calls`` (every request's path and query, secret and token
values redacted). Unknown paths get an HTTP 404.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from chalicelib.integrations.wecom_crypto import CallbackCrypto
from infra.local.peer import LoopbackPeer

TOKEN_LIFETIME = 7200
CODE_PREFIX = "code-"
MAX_RECIPIENTS = 1000
# WeCom's per-member limits for one app; deliveries beyond them are dropped without an error.
RATE_LIMITS = ((60.0, 30), (3600.0, 1000))
# Members who cannot receive: 2 disabled, 5 left the corp (1 active, 4 not yet activated).
UNREACHABLE_STATUSES = frozenset({2, 5})
_REDACTED_PARAMS = ("corpsecret", "access_token")
_FAILURE_MESSAGES = {-1: "system busy", 45009: "api freq out of limit", 45033: "api concurrent out of limit"}

Answer = tuple[int, Any]  # HTTP status and a JSON body (a str is sent as plain text)


def _refusal(errcode: int, errmsg: str) -> Answer:
    return 200, {"errcode": errcode, "errmsg": errmsg}


def _ok(**fields: Any) -> Answer:
    return 200, {"errcode": 0, "errmsg": "ok", **fields}


class FakeWeCom(LoopbackPeer):
    """A fake WeCom for one application (corp id + secret). Start it, point a client at ``url``.

    ``members`` maps userid -> ``{"name", "department": [ids], "status": 1 active / 5 left, ...}``
    (any other field is returned by ``user/get``); ``departments`` are ``{"id", "parentid", "order"}``
    (default: the root department 1). ``clock`` (seconds) drives the per-member rate windows.
    """

    peer_name = "fake-wecom"

    def __init__(
        self,
        corp_id: str,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        agent_id: str = "",
        members: dict[str, dict] | None = None,
        departments: list[dict] | None = None,
        page_size: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.corp_id = corp_id
        self.agent_id = agent_id
        self._secret = secret
        self._address = (host, port)
        # WeCom userids are case-insensitive: look members up by the lower-cased id.
        self._members = None if members is None else {u.lower(): {**m, "userid": u} for u, m in members.items()}
        self._departments = departments or [{"id": 1, "parentid": 0, "order": 100000000}]
        self.page_size = page_size
        self._clock = clock
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.sent: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._token: str | None = None  # handed out by gettoken until it expires
        self._expired_tokens: set[str] = set()
        self._used_codes: set[str] = set()
        self._failures: list[int] = []  # errcodes of the next answers (fail_next)
        self._outage = 0  # HTTP requests still to answer 503 (outage)
        # (agentid, userid) -> delivery times, one queue per RATE_LIMITS window
        self._deliveries: dict[tuple[str, str], tuple[deque[float], ...]] = {}
        self._routes: dict[tuple[str, str], Callable[[dict[str, str], Any], Answer]] = {
            ("GET", "/cgi-bin/gettoken"): self._gettoken,
            ("GET", "/cgi-bin/auth/getuserinfo"): self._getuserinfo,
            ("POST", "/cgi-bin/message/send"): self._message_send,
            ("GET", "/cgi-bin/department/simplelist"): self._department_simplelist,
            ("POST", "/cgi-bin/user/list_id"): self._user_list_id,
            ("GET", "/cgi-bin/user/get"): self._user_get,
        }

    def _make_server(self) -> _Server:
        return _Server(self._address, _Handler, self)

    # --- test hooks -----------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Expire every token issued so far: using one gets 42001; gettoken issues a new one."""
        with self._lock:
            if self._token is not None:
                self._expired_tokens.add(self._token)
                self._token = None

    def fail_next(self, n: int, errcode: int) -> None:
        """Answer the next ``n`` API calls (any endpoint) with ``errcode``, doing nothing else."""
        with self._lock:
            self._failures.extend([errcode] * n)

    def outage(self, n: int) -> None:
        """Answer the next ``n`` HTTP requests (any path but ``/_sent``) with HTTP 503, doing nothing."""
        with self._lock:
            self._outage += n

    def send_callback(
        self,
        app_url: str,
        message_xml: str,
        token: str,
        encoding_aes_key: str,
        *,
        timestamp: int | None = None,
        nonce: str | None = None,
    ) -> requests.Response:
        """POST ``message_xml`` to ``{app_url}/wecom/callback`` as WeCom does: encrypted for this
        corp, in an ``<xml><ToUserName/><AgentID/><Encrypt/></xml>`` envelope, signed in the query
        (``msg_signature``, ``timestamp``, ``nonce``). ``timestamp`` defaults to now (unix seconds).
        """
        crypto = CallbackCrypto(token, encoding_aes_key, self.corp_id)
        encrypted = crypto.encrypt(message_xml)
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(8)
        envelope = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        )
        return requests.post(
            f"{app_url.rstrip('/')}/wecom/callback",
            params={"msg_signature": crypto.signature(stamp, nonce, encrypted), "timestamp": stamp, "nonce": nonce},
            data=envelope.encode("utf-8"),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            timeout=10,
        )

    # --- serving ------------------------------------------------------------------------------

    def answer(self, path: str, params: dict[str, str], method: str = "GET", body: Any = None) -> Answer:
        """``(HTTP status, body)`` for one request (``body``: the parsed JSON, if any); records it."""
        with self._lock:
            if (method, path) == ("GET", "/_sent"):
                return 200, list(self.sent)
            self.calls.append((path, {k: "***" if k in _REDACTED_PARAMS else v for k, v in params.items()}))
            if self._outage:
                self._outage -= 1
                return 503, "503 Service Unavailable (outage injected)"
            route = self._routes.get((method, path))
            if route is None:
                return 404, {"errcode": 404, "errmsg": f"no such API in the fake WeCom: {method} {path}"}
            if self._failures:
                errcode = self._failures.pop(0)
                return _refusal(errcode, _FAILURE_MESSAGES.get(errcode, "failure injected by fail_next"))
            if path != "/cgi-bin/gettoken":
                refused = self._check_token(params.get("access_token", ""))
                if refused is not None:
                    return refused
            return route(params, body)

    def _check_token(self, token: str) -> Answer | None:
        if not token:
            return _refusal(41001, "access_token missing")
        if token in self._expired_tokens:
            return _refusal(42001, "access_token expired")
        if token != self._token:
            return _refusal(40014, "invalid access_token")
        return None

    def _gettoken(self, params: dict[str, str], _body: Any) -> Answer:
        if params.get("corpid") != self.corp_id:
            return _refusal(40013, "invalid corpid")
        if params.get("corpsecret") != self._secret:
            return _refusal(40001, "invalid credential")
        # Like WeCom, the same token is returned while it is valid.
        if self._token is None:
            self._token = secrets.token_urlsafe(32)
        return _ok(access_token=self._token, expires_in=TOKEN_LIFETIME)

    def _getuserinfo(self, params: dict[str, str], _body: Any) -> Answer:
        code = params.get("code", "")
        userid = code.removeprefix(CODE_PREFIX) if code.startswith(CODE_PREFIX) else ""
        if not userid or code in self._used_codes:
            return _refusal(40029, "invalid code")
        self._used_codes.add(code)
        if self._members is not None and userid.lower() not in self._members:
            return _ok(openid=f"o-{secrets.token_hex(8)}", external_userid=f"wm-{secrets.token_hex(8)}")
        return _ok(userid=userid, user_ticket=secrets.token_urlsafe(24))

    def _message_send(self, _params: dict[str, str], payload: Any) -> Answer:
        if not isinstance(payload, dict):
            return _refusal(47001, "data format error")
        if self.agent_id and str(payload.get("agentid")) != self.agent_id:
            return _refusal(40056, "invalid agentid")
        msgtype = payload.get("msgtype")
        if not isinstance(msgtype, str) or not isinstance(payload.get(msgtype), dict):
            return _refusal(40008, "invalid message type")
        touser = [u for u in str(payload.get("touser", "")).split("|") if u]
        if len(touser) > MAX_RECIPIENTS:
            return _refusal(40058, f"touser exceeds {MAX_RECIPIENTS}")
        if touser == ["@all"]:
            touser = [u for u, m in (self._members or {}).items() if self._reachable(m)]
        if self._members is None:
            valid, invalid = [u.lower() for u in touser], []
        else:
            valid = [u.lower() for u in touser if self._reachable(self._members.get(u.lower()))]
            invalid = [u.lower() for u in touser if u.lower() not in valid]
            if touser and not valid and not payload.get("toparty") and not payload.get("totag"):
                return _refusal(81013, "user & party & tag all invalid")
        msgid = secrets.token_urlsafe(24)
        self.sent.append({"payload": payload, "msgid": msgid, "invaliduser": "|".join(invalid)})
        self._count_deliveries(str(payload.get("agentid")), valid, msgid)
        return _ok(invaliduser="|".join(invalid), invalidparty="", invalidtag="", unlicenseduser="", msgid=msgid)

    @staticmethod
    def _reachable(member: dict | None) -> bool:
        return member is not None and member.get("status", 1) not in UNREACHABLE_STATUSES

    def _count_deliveries(self, agentid: str, userids: list[str], msgid: str) -> None:
        """Record in ``dropped`` each delivery beyond a member's limits; count only delivered ones."""
        now = self._clock()
        for userid in userids:
            # One queue of delivery times per window, so each check is O(1) even in a flood.
            windows = self._deliveries.setdefault((agentid, userid), tuple(deque() for _ in RATE_LIMITS))
            over = None
            for (seconds, limit), times in zip(RATE_LIMITS, windows):
                while times and times[0] <= now - seconds:
                    times.popleft()
                if over is None and len(times) >= limit:
                    over = f"{limit}/{int(seconds)}s"
            if over is not None:
                self.dropped.append({"msgid": msgid, "agentid": agentid, "userid": userid, "limit": over})
            else:
                for times in windows:
                    times.append(now)

    def _department_simplelist(self, params: dict[str, str], _body: Any) -> Answer:
        departments = self._departments
        if params.get("id"):
            root = params["id"]
            if not any(str(d["id"]) == root for d in departments):
                return _refusal(60123, "invalid party id")
            subtree = {root}
            for _ in departments:  # enough passes for any depth
                subtree |= {str(d["id"]) for d in departments if str(d["parentid"]) in subtree}
            departments = [d for d in departments if str(d["id"]) in subtree]
        return _ok(department_id=[{k: d[k] for k in ("id", "parentid", "order")} for d in departments])

    def _user_list_id(self, _params: dict[str, str], request: Any) -> Answer:
        request = request if isinstance(request, dict) else {}
        limit = request.get("limit", 1000)
        cursor = request.get("cursor") or "c0"
        if not isinstance(limit, int) or not 1 <= limit <= 10000:
            return _refusal(40058, "limit must be 1 to 10000")
        if not (isinstance(cursor, str) and cursor.startswith("c") and cursor[1:].isdigit()):
            return _refusal(40058, "invalid cursor")
        rows = [
            {"userid": m["userid"], "department": department}
            for _, m in sorted((self._members or {}).items())
            for department in m.get("department", [])
        ]
        start = int(cursor[1:])
        end = start + min(limit, self.page_size)
        return _ok(next_cursor=f"c{end}" if end < len(rows) else "", dept_user=rows[start:end])

    def _user_get(self, params: dict[str, str], _body: Any) -> Answer:
        member = (self._members or {}).get(params.get("userid", "").lower())
        if member is None:
            return _refusal(60111, "userid not found")
        departments = member.get("department", [])
        return _ok(**{"status": 1, "main_department": departments[0] if departments else 1, **member})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeWeCom) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self._serve("GET", None)

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None  # each API answers a malformed body its own way
        self._serve("POST", body)

    def _serve(self, method: str, body: Any) -> None:
        url = urlsplit(self.path)
        params = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        status, answer = self.server.fake.answer(url.path, params, method, body)
        if isinstance(answer, str):
            payload, content_type = answer.encode("utf-8"), "text/plain"
        else:
            payload, content_type = json.dumps(answer, ensure_ascii=False).encode("utf-8"), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        # The default writes every request to stderr; tests inspect `calls` instead.
        return
