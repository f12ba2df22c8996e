"""A FAKE WeCom (企业微信) API peer for the local stack and tests; never used by production code.

It answers the two calls the platform makes at login the way WeCom does (HTTP 200, JSON with
``errcode``/``errmsg``), on loopback, in a daemon thread:

* ``GET /cgi-bin/gettoken?corpid=&corpsecret=``: the right pair gets a random access token valid
  for 7200 s (the same one until :meth:`FakeWeCom.expire_tokens`); a wrong corp id gets 40013, a
  wrong secret 40001.
* ``GET /cgi-bin/auth/getuserinfo?access_token=&code=``: an expired token gets 42001, an unknown
  one 40014; a code ``code-<userid>`` signs in ``<userid>`` once (reused or other codes: 40029).

Test hooks: :meth:`FakeWeCom.expire_tokens`, :meth:`FakeWeCom.fail_next`, and ``calls`` (every
request's path and query, secret and token values redacted). Unknown paths get an HTTP 404.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN_LIFETIME = 7200
CODE_PREFIX = "code-"
_REDACTED_PARAMS = ("corpsecret", "access_token")
_FAILURE_MESSAGES = {-1: "system busy", 45009: "api freq out of limit"}

Answer = tuple[int, dict[str, Any]]


def _refusal(errcode: int, errmsg: str) -> Answer:
    return 200, {"errcode": errcode, "errmsg": errmsg}


class FakeWeCom:
    """A fake WeCom for one application (corp id + secret). Start it, point a client at ``url``."""

    def __init__(self, corp_id: str, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.corp_id = corp_id
        self._secret = secret
        self._address = (host, port)
        self.calls: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._token: str | None = None  # handed out by gettoken until it expires
        self._expired_tokens: set[str] = set()
        self._used_codes: set[str] = set()
        self._failures: list[int] = []  # errcodes of the next answers (fail_next)
        self._routes: dict[str, Callable[[dict[str, str]], Answer]] = {
            "/cgi-bin/gettoken": self._gettoken,
            "/cgi-bin/auth/getuserinfo": self._getuserinfo,
        }
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Serve in a daemon thread; returns the base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._server is not None:
            raise RuntimeError("FakeWeCom is already started")
        self._server = _Server(self._address, _Handler, self)
        # A short poll interval keeps stop() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-wecom", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeWeCom:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeWeCom is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

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

    def answer(self, path: str, params: dict[str, str]) -> Answer:
        """``(HTTP status, JSON body)`` for one GET; records the call."""
        with self._lock:
            self.calls.append((path, {k: "***" if k in _REDACTED_PARAMS else v for k, v in params.items()}))
            route = self._routes.get(path)
            if route is None:
                return 404, {"errcode": 404, "errmsg": f"no such API in the fake WeCom: {path}"}
            if self._failures:
                errcode = self._failures.pop(0)
                return _refusal(errcode, _FAILURE_MESSAGES.get(errcode, "failure injected by fail_next"))
            return route(params)

    def _gettoken(self, params: dict[str, str]) -> Answer:
        if params.get("corpid") != self.corp_id:
            return _refusal(40013, "invalid corpid")
        if params.get("corpsecret") != self._secret:
            return _refusal(40001, "invalid credential")
        # Like WeCom, the same token is returned while it is valid.
        if self._token is None:
            self._token = secrets.token_urlsafe(32)
        return 200, {"errcode": 0, "errmsg": "ok", "access_token": self._token, "expires_in": TOKEN_LIFETIME}

    def _getuserinfo(self, params: dict[str, str]) -> Answer:
        token = params.get("access_token", "")
        if not token:
            return _refusal(41001, "access_token missing")
        if token in self._expired_tokens:
            return _refusal(42001, "access_token expired")
        if token != self._token:
            return _refusal(40014, "invalid access_token")
        code = params.get("code", "")
        userid = code.removeprefix(CODE_PREFIX) if code.startswith(CODE_PREFIX) else ""
        if not userid or code in self._used_codes:
            return _refusal(40029, "invalid code")
        self._used_codes.add(code)
        return 200, {"errcode": 0, "errmsg": "ok", "userid": userid, "user_ticket": secrets.token_urlsafe(24)}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeWeCom) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        url = urlsplit(self.path)
        params = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        status, body = self.server.fake.answer(url.path, params)
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        # The default writes every request to stderr; tests inspect `calls` instead.
        return
