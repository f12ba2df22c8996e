"""WeCom (企业微信) server API client: the application's access token and web-login codes.

The only module that speaks HTTP to WeCom. Protocol (developer.work.weixin.qq.com):

* ``GET /cgi-bin/gettoken?corpid=ID&corpsecret=SECRET`` ->
  ``{"errcode": 0, "errmsg": "ok", "access_token": "...", "expires_in": 7200}``. WeCom rate-limits
  this call and may revoke a token early, so the token is cached and refetched when rejected.
* ``GET /cgi-bin/auth/getuserinfo?access_token=TOKEN&code=CODE`` -> for a member
  ``{"errcode": 0, "errmsg": "ok", "userid": "...", "user_ticket": "..."}``; for a non-member
  ``{"errcode": 0, "errmsg": "ok", "openid": "...", "external_userid": "..."}``. A code works once
  and expires after 5 minutes (then ``40029 invalid code``).

WeCom answers errors with HTTP 200 and a non-zero ``errcode``; callers must go by ``errcode``,
never by ``errmsg`` (WeCom rewords it). Secrets, access tokens and login codes never appear in
an exception message: they would end up in logs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from chalicelib.settings import SettingsError, get_settings

# WeCom global errcodes this client acts on.
SYSTEM_BUSY = -1
INVALID_ACCESS_TOKEN = 40014
INVALID_CODE = 40029
ACCESS_TOKEN_EXPIRED = 42001
FREQUENCY_LIMIT = 45009

_TOKEN_REJECTED = frozenset({INVALID_ACCESS_TOKEN, ACCESS_TOKEN_EXPIRED})
_TRANSIENT = frozenset({SYSTEM_BUSY, FREQUENCY_LIMIT})
# Pauses before the second and third try of a busy answer: WeCom advises at most three retries,
# and a login request cannot wait long.
_BUSY_BACKOFF = (0.2, 0.5)
# Refresh this long before WeCom's expiry, so a token never dies between our check and its use.
_REFRESH_MARGIN = 300.0
_SENSITIVE_PARAMS = ("corpsecret", "access_token", "code")


class WeComError(Exception):
    """WeCom refused a call. ``errcode`` is WeCom's code, or -1 when WeCom gave none of its own.

    The message never contains a secret, access token or login code.
    """

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeCom errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeComUnavailable(WeComError):
    """WeCom could not be reached, failed (HTTP 5xx), or stayed busy or rate-limited after retries.

    Worth retrying later (a queue consumer lets the message come back); -1 for transport failures.
    """


class WeComClient:
    """One WeCom application (corp id + application secret). Thread-safe; share one per process."""

    def __init__(
        self,
        api_base: str,
        corp_id: str,
        secret: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.0, 5.0),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api_base = api_base.rstrip("/")
        self._corp_id = corp_id
        self._secret = secret
        self._session = session or requests.Session()
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # (token, refresh_at on `clock`), replaced as a whole so readers need no lock.
        self._token: tuple[str, float] | None = None

    def __repr__(self) -> str:
        return f"WeComClient(api_base={self._api_base!r}, corp_id={self._corp_id!r})"

    def access_token(self) -> str:
        """The application's access token, fetched once and reused until 5 minutes before expiry.

        Concurrent callers wait for a single refresh rather than each calling ``gettoken``.

        Raises:
            WeComUnavailable: WeCom unreachable, failing or busy.
            WeComError: WeCom refused the credentials (40013 bad corp id, 40001 bad secret, ...).
        """
        cached = self._token
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        with self._lock:
            cached = self._token
            if cached is not None and self._clock() < cached[1]:  # refreshed while we waited
                return cached[0]
            started = self._clock()
            body = self._get("/cgi-bin/gettoken", {"corpid": self._corp_id, "corpsecret": self._secret})
            if body["errcode"] != 0:
                raise WeComError(body["errcode"], body["errmsg"])
            token, expires_in = body.get("access_token"), body.get("expires_in")
            if not isinstance(token, str) or not token or not isinstance(expires_in, int):
                raise WeComError(-1, "gettoken answer lacks access_token or expires_in")
            self._token = (token, started + max(expires_in - _REFRESH_MARGIN, 0.0))
            return token

    def userid_for_code(self, code: str) -> str | None:
        """The WeCom ``userid`` of the member who obtained the web-login ``code``.

        Returns:
            The userid, or None when the code is invalid, expired or already used (40029) or the
            visitor is not a member of the corp (WeCom answers with an ``openid`` only).

        Raises:
            WeComUnavailable: WeCom unreachable, failing or busy.
            WeComError: any other refusal, e.g. a fresh access token was rejected as well (the
                rejected token is forgotten either way, so the next call fetches another).
        """
        if not code:
            return None
        for _ in range(2):
            token = self.access_token()
            body = self._get("/cgi-bin/auth/getuserinfo", {"access_token": token, "code": code})
            if body["errcode"] not in _TOKEN_REJECTED:
                break
            # WeCom may revoke a token before its expiry: forget it, try once more with a new one.
            self._forget_token(token)
        if body["errcode"] == INVALID_CODE:
            return None
        if body["errcode"] != 0:
            raise WeComError(body["errcode"], body["errmsg"])
        userid = body.get("userid")
        return userid if isinstance(userid, str) and userid else None

    def _forget_token(self, token: str) -> None:
        # Only drop the token that failed: another thread may already have fetched a fresh one.
        with self._lock:
            if self._token is not None and self._token[0] == token:
                self._token = None

    def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """GET ``path`` with ``params``; retry while WeCom answers busy (-1) or rate-limited (45009).

        Returns:
            WeCom's JSON answer with an int ``errcode`` (0 or a refusal for the caller to judge) and
            an ``errmsg`` scrubbed of the parameters' sensitive values.

        Raises:
            WeComUnavailable: transport failure, HTTP 5xx, or still busy after the retries.
            WeComError: any other answer that is not WeCom JSON (errcode -1).
        """
        body = self._get_once(path, params)
        for delay in _BUSY_BACKOFF:
            if body["errcode"] not in _TRANSIENT:
                return body
            self._sleep(delay)
            body = self._get_once(path, params)
        if body["errcode"] in _TRANSIENT:
            raise WeComUnavailable(body["errcode"], body["errmsg"])
        return body

    def _get_once(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        try:
            response = self._session.get(self._api_base + path, params=dict(params), timeout=self._timeout)
        except requests.RequestException as exc:
            # requests' messages carry the full URL, query string and secret included: keep the
            # type only, and drop the chained exception so a logged traceback cannot leak it.
            raise WeComUnavailable(-1, f"{path} unreachable ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise WeComUnavailable(-1, f"{path} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        errcode = body.get("errcode", 0) if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(errcode, int):
            raise WeComError(-1, f"{path} answered HTTP {response.status_code} without WeCom JSON")
        body["errcode"] = errcode
        body["errmsg"] = _scrub(str(body.get("errmsg", "")), params)
        return body


def _scrub(text: str, params: Mapping[str, str]) -> str:
    """``text`` with the values of sensitive parameters replaced (WeCom may echo them back)."""
    for name in _SENSITIVE_PARAMS:
        value = params.get(name)
        if value:
            text = text.replace(value, "***")
    return text


_client_lock = threading.Lock()
_session: requests.Session | None = None
_client: tuple[tuple[str, str, str], WeComClient] | None = None


def wecom_client() -> WeComClient:
    """The process's WeCom client, built on first use from the settings.

    Rebuilt only when ``WECOM_API_BASE``, ``WECOM_CORP_ID`` or ``WECOM_SECRET`` change; every
    client shares one HTTP session (connection pool).

    Raises:
        SettingsError: ``WECOM_CORP_ID`` or ``WECOM_SECRET`` is not set.
    """
    global _client, _session
    settings = get_settings()
    if not settings.wecom_corp_id:
        raise SettingsError("invalid configuration: WECOM_CORP_ID is not set")
    key = (settings.wecom_api_base, settings.wecom_corp_id, settings.secret("wecom_secret"))
    cached = _client
    if cached is not None and cached[0] == key:
        return cached[1]
    with _client_lock:
        if _client is not None and _client[0] == key:
            return _client[1]
        if _session is None:
            _session = requests.Session()
        client = WeComClient(*key, session=_session)
        _client = (key, client)
        return client
