"""WeCom (企业微信) server API client: access token, web login, app messages and the directory.

The only module that speaks HTTP to WeCom. Protocol (developer.work.weixin.qq.com), every call but
``gettoken`` taking ``?access_token=TOKEN``:

* ``GET /cgi-bin/gettoken?corpid=ID&corpsecret=SECRET`` ->
  ``{"errcode": 0, "errmsg": "ok", "access_token": "...", "expires_in": 7200}``. WeCom rate-limits
  this call and may revoke a token early, so the token is cached (in this process and, through a
  :class:`TokenCache`, across Lambda containers) and refetched when rejected (40014/42001).
* ``GET /cgi-bin/auth/getuserinfo?code=CODE`` -> for a member ``{"userid": "...", ...}``; for a
  non-member ``{"openid": "...", ...}``. A code works once and expires after 5 minutes
  (then ``40029 invalid code``).
* ``POST /cgi-bin/message/send`` with ``{"touser": "a|b", "msgtype": ..., "agentid": ..., ...}``
  (at most 1000 ``touser``) -> ``{"msgid": "...", "invaliduser": "a|b", "unlicenseduser": "..."}``
  (userids lower-cased); ``81013`` when no recipient is valid.
* ``GET /cgi-bin/department/simplelist`` -> ``{"department_id": [{"id", "parentid", "order"}]}``.
* ``POST /cgi-bin/user/list_id`` with ``{"cursor", "limit" <= 10000}`` ->
  ``{"next_cursor": "..." or "", "dept_user": [{"userid", "department"}]}`` (one row per department).
* ``GET /cgi-bin/user/get?userid=ID`` -> the member (``name``, ``department``, ``status``...);
  ``60111`` when there is no such userid.

WeCom answers errors with HTTP 200 and a non-zero ``errcode``; callers must go by ``errcode``,
never by ``errmsg`` (WeCom rewords it). Secrets, access tokens, login codes and message content
never appear in an exception message: they would end up in logs.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from chalicelib.db.kv import KeyValueStore
from chalicelib.settings import SettingsError, get_settings

# WeCom global errcodes this client acts on.
SYSTEM_BUSY = -1
INVALID_ACCESS_TOKEN = 40014
INVALID_CODE = 40029
ACCESS_TOKEN_EXPIRED = 42001
FREQUENCY_LIMIT = 45009
CONCURRENCY_LIMIT = 45033
USER_NOT_FOUND = 60111
NO_VALID_RECIPIENT = 81013

MAX_RECIPIENTS = 1000  # touser ids per message/send
LIST_ID_LIMIT = 10000  # user/list_id page size, WeCom's maximum

_TOKEN_REJECTED = frozenset({INVALID_ACCESS_TOKEN, ACCESS_TOKEN_EXPIRED})
_TRANSIENT = frozenset({SYSTEM_BUSY, FREQUENCY_LIMIT, CONCURRENCY_LIMIT})
# Pauses before the second and third try of a busy or failed answer: WeCom advises at most three
# retries, and a login request cannot wait long (a queue consumer retries later anyway).
_BACKOFF = (0.2, 0.5)
# Refresh this long before WeCom's expiry, so a token never dies between our check and its use.
_REFRESH_MARGIN = 300.0
# One container refreshes at a time: it holds this lock key while calling gettoken. The others
# poll the shared cache for its token, then give up waiting and fetch their own (gettoken returns
# the same token while it is valid, so a duplicate fetch is harmless, just rate-limited).
_REFRESH_LOCK_TTL = 10.0
_REFRESH_WAIT = 3.0
_REFRESH_POLL = 0.2
_SENSITIVE_PARAMS = ("corpsecret", "access_token", "code")


class WeComError(Exception):
    """WeCom refused a call. ``errcode`` is WeCom's code, or -1 when WeCom gave none of its own.

    The message never contains a secret, access token, login code or message content.
    """

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeCom errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeComUnavailable(WeComError):
    """WeCom could not be reached, failed (HTTP 5xx), or stayed busy or rate-limited after retries.

    Worth retrying later (a queue consumer lets the message come back); -1 for transport failures.
    """


class TokenCache(Protocol):
    """Short-lived keys shared by every container (:class:`~chalicelib.db.kv.KeyValueStore` fits).

    ``get`` returns only live values; ``claim`` creates a key unless a live one exists and says
    whether this caller got it; ``release`` deletes a key.
    """

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str, ttl_seconds: float) -> None: ...

    def claim(self, key: str, ttl_seconds: float) -> bool: ...

    def release(self, key: str) -> None: ...


@dataclass(frozen=True)
class SendResult:
    """WeCom's answer to ``message/send``.

    ``msgid`` is None when nothing was sent (no valid recipient). ``invalid_users`` are the
    ``touser`` ids WeCom will not deliver to (unknown, outside the app's range, or unlicensed),
    lower-cased as WeCom reports them (userids are case-insensitive).
    """

    msgid: str | None
    invalid_users: frozenset[str]


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
        token_cache: TokenCache | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``clock`` is wall-clock seconds: token refresh times are shared with other containers."""
        self._api_base = api_base.rstrip("/")
        self._corp_id = corp_id
        self._secret = secret
        self._session = session or requests.Session()
        self._timeout = timeout
        self._cache = token_cache
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # (token, refresh_at on `clock`), replaced as a whole so readers need no lock.
        self._token: tuple[str, float] | None = None
        # Per application, not only per corp: each app's secret has its own token. A digest of the
        # secret tells apps apart (and follows a rotation) without storing the secret.
        app = hashlib.sha256(secret.encode()).hexdigest()[:16]
        self._cache_key = f"wecom#token#{corp_id}#{app}"
        self._lock_key = f"{self._cache_key}#refresh"

    def __repr__(self) -> str:
        return f"WeComClient(api_base={self._api_base!r}, corp_id={self._corp_id!r})"

    # --- access token -------------------------------------------------------------------------

    def access_token(self) -> str:
        """The application's access token, reused until 5 minutes before WeCom's expiry.

        Looked up in this process, then in the shared token cache; only then fetched, by one
        caller at a time: threads here wait on a lock, other containers on a lock key in the cache.

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
            self._token = self._shared_token()
            return self._token[0]

    def _shared_token(self) -> tuple[str, float]:
        if self._cache is None:
            return self._fetch_token()
        found = self._read_cache()
        if found is not None:
            return found
        if self._cache.claim(self._lock_key, _REFRESH_LOCK_TTL):
            try:
                # Another container may have stored a token between our read and our claim.
                return self._read_cache() or self._fetch_and_share()
            finally:
                self._cache.release(self._lock_key)
        for _ in range(round(_REFRESH_WAIT / _REFRESH_POLL)):
            self._sleep(_REFRESH_POLL)
            found = self._read_cache()
            if found is not None:
                return found
        # The holder is slow or died holding the lock (the key expires by itself): fetch our own.
        return self._fetch_and_share()

    def _read_cache(self) -> tuple[str, float] | None:
        assert self._cache is not None
        try:
            entry = json.loads(self._cache.get(self._cache_key) or "null")
            token, refresh_at = entry["access_token"], float(entry["refresh_at"])
        except (ValueError, TypeError, KeyError):
            return None  # missing or unreadable: treated as absent
        return (token, refresh_at) if isinstance(token, str) and token and self._clock() < refresh_at else None

    def _fetch_and_share(self) -> tuple[str, float]:
        assert self._cache is not None
        token, refresh_at = self._fetch_token()
        ttl = refresh_at - self._clock()
        if ttl > 0:
            self._cache.put(self._cache_key, json.dumps({"access_token": token, "refresh_at": refresh_at}), ttl)
        return token, refresh_at

    def _fetch_token(self) -> tuple[str, float]:
        started = self._clock()
        body = self._request("GET", "/cgi-bin/gettoken", {"corpid": self._corp_id, "corpsecret": self._secret})
        if body["errcode"] != 0:
            raise WeComError(body["errcode"], body["errmsg"])
        token, expires_in = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise WeComError(-1, "gettoken answer lacks access_token or expires_in")
        return token, started + max(expires_in - _REFRESH_MARGIN, 0.0)

    def _forget_token(self, token: str) -> None:
        # Only drop the token that failed, in either layer: another thread or container may
        # already have stored a fresh one.
        with self._lock:
            if self._token is not None and self._token[0] == token:
                self._token = None
            if self._cache is not None:
                shared = self._read_cache()
                if shared is not None and shared[0] == token:
                    self._cache.release(self._cache_key)

    # --- API calls ----------------------------------------------------------------------------

    def userid_for_code(self, code: str) -> str | None:
        """The WeCom ``userid`` of the member who obtained the web-login ``code``.

        Returns:
            The userid, or None when the code is invalid, expired or already used (40029) or the
            visitor is not a member of the corp (WeCom answers with an ``openid`` only).

        Raises:
            WeComUnavailable: WeCom unreachable, failing or busy.
            WeComError: any other refusal, e.g. a fresh access token was rejected as well.
        """
        if not code:
            return None
        # No retry after a transport failure: the lost call may have used the one-shot code.
        body = self._call(
            "GET", "/cgi-bin/auth/getuserinfo", {"code": code}, accept={INVALID_CODE}, retry_transport=False
        )
        userid = body.get("userid")
        return userid if body["errcode"] == 0 and isinstance(userid, str) and userid else None

    def send_message(self, payload: Mapping[str, Any]) -> SendResult:
        """Send an app message; ``payload`` is WeCom's body (``touser``, ``msgtype``, ``agentid``...).

        Transient failures (busy, rate-limited, HTTP 5xx, unreachable) are retried briefly, so a
        payload should set ``enable_duplicate_check``: WeCom then delivers a retried message once
        even when the first try did arrive.

        Returns:
            The msgid and the recipients WeCom will not deliver to; when none is valid (81013) no
            msgid and every ``touser`` id.

        Raises:
            ValueError: more than 1000 ``touser`` ids (split the recipients first).
            WeComUnavailable: WeCom unreachable, failing or busy: worth retrying later.
            WeComError: any other refusal (bad agentid, msgtype, content...).
        """
        touser = _split_ids(payload.get("touser"))
        if len(touser) > MAX_RECIPIENTS:
            raise ValueError(f"message/send takes at most {MAX_RECIPIENTS} touser ids, got {len(touser)}")
        body = self._call("POST", "/cgi-bin/message/send", {}, dict(payload), accept={NO_VALID_RECIPIENT})
        if body["errcode"] == NO_VALID_RECIPIENT:
            return SendResult(msgid=None, invalid_users=frozenset(touser))
        msgid = body.get("msgid")
        return SendResult(
            msgid=msgid if isinstance(msgid, str) and msgid else None,
            # Unlicensed members are in the app's range but cannot receive: undeliverable too.
            invalid_users=frozenset(_split_ids(body.get("invaliduser")) + _split_ids(body.get("unlicenseduser"))),
        )

    def department_simplelist(self) -> list[dict[str, Any]]:
        """Every department the app can see: ``{"id", "parentid", "order"}`` (root: parentid 0).

        Raises:
            WeComUnavailable, WeComError: as :meth:`send_message`.
        """
        return _items(self._call("GET", "/cgi-bin/department/simplelist", {}), "department_id")

    def user_list_id(self) -> Iterator[dict[str, Any]]:
        """Every member's ``{"userid", "department"}``, one row per department, page by page.

        Lazy: each page (10,000 rows) is fetched when the previous one is consumed.

        Raises:
            WeComUnavailable, WeComError: as :meth:`send_message`, also midway through.
        """
        cursor = ""
        while True:
            request: dict[str, Any] = {"limit": LIST_ID_LIMIT} | ({"cursor": cursor} if cursor else {})
            body = self._call("POST", "/cgi-bin/user/list_id", {}, request)
            yield from _items(body, "dept_user")
            next_cursor = body.get("next_cursor") or ""
            if not next_cursor:
                return
            if next_cursor == cursor:
                raise WeComError(-1, "user/list_id returned the same cursor again")
            cursor = next_cursor

    def user_get(self, userid: str) -> dict[str, Any] | None:
        """The member ``userid`` as WeCom describes it (``name``, ``department``, ``status``...).

        Returns:
            WeCom's answer without ``errcode``/``errmsg``, or None when no such member (60111).

        Raises:
            WeComUnavailable, WeComError: as :meth:`send_message`.
        """
        if not userid:
            return None
        body = self._call("GET", "/cgi-bin/user/get", {"userid": userid}, accept={USER_NOT_FOUND})
        if body["errcode"] == USER_NOT_FOUND:
            return None
        return {key: value for key, value in body.items() if key not in ("errcode", "errmsg")}

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        json: Mapping[str, Any] | None = None,
        *,
        accept: Collection[int] = (),
        retry_transport: bool = True,
    ) -> dict[str, Any]:
        """Call an API with the access token; a rejected token is replaced and the call made once more.

        Args:
            accept: non-zero errcodes the caller handles itself (returned, not raised).
            retry_transport: retry after HTTP 5xx or a transport failure (False for one-shot calls).

        Returns:
            WeCom's JSON answer, ``errcode`` 0 or one of ``accept``.

        Raises:
            WeComUnavailable: transport failure, HTTP 5xx, or still busy after the retries.
            WeComError: any other non-zero errcode, including a fresh token rejected again.
        """
        for _ in range(2):
            token = self.access_token()
            body = self._request(method, path, {**params, "access_token": token}, json, retry_transport)
            if body["errcode"] not in _TOKEN_REJECTED:
                break
            # WeCom may revoke a token before its expiry: forget it, try once more with a new one.
            self._forget_token(token)
        if body["errcode"] != 0 and body["errcode"] not in accept:
            raise WeComError(body["errcode"], body["errmsg"])
        return body

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        json: Mapping[str, Any] | None = None,
        retry_transport: bool = True,
    ) -> dict[str, Any]:
        """One API call, retried while WeCom is busy or rate-limited (-1, 45009, 45033).

        Returns:
            WeCom's JSON answer with an int ``errcode`` (0 or a refusal for the caller to judge).

        Raises:
            WeComUnavailable: transport failure or HTTP 5xx (after retries if ``retry_transport``),
                or still busy after the retries.
            WeComError: an answer that is not WeCom JSON (errcode -1).
        """
        delays = iter(_BACKOFF)
        while True:
            try:
                body = self._request_once(method, path, params, json)
                if body["errcode"] not in _TRANSIENT:
                    return body
                failure = WeComUnavailable(body["errcode"], body["errmsg"])
            except WeComUnavailable as exc:
                if not retry_transport:
                    raise
                failure = exc
            delay = next(delays, None)
            if delay is None:
                raise failure
            self._sleep(delay)

    def _request_once(
        self, method: str, path: str, params: Mapping[str, str], json: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        try:
            response = self._session.request(
                method, self._api_base + path, params=dict(params), json=json, timeout=self._timeout
            )
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
        body["errmsg"] = _scrub(str(body.get("errmsg", "")), params, json)
        return body


def _split_ids(value: Any) -> list[str]:
    """``"A|b"`` -> ``["a", "b"]``: WeCom userids are case-insensitive and answered lower-case."""
    return [part.lower() for part in value.split("|") if part] if isinstance(value, str) else []


def _items(body: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    items = body.get(field, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise WeComError(-1, f"WeCom answer has no list of objects in {field}")
    return items


def _scrub(text: str, params: Mapping[str, str], body: Any) -> str:
    """``text`` without sensitive parameter values or the body's strings (WeCom may echo them)."""
    hidden = [params[name] for name in _SENSITIVE_PARAMS if params.get(name)] + list(_strings(body))
    for value in sorted(hidden, key=len, reverse=True):
        if len(value) >= 3:  # shorter ones would only mangle the message
            text = text.replace(value, "***")
    return text


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


_client_lock = threading.Lock()
_session: requests.Session | None = None
_client: tuple[tuple[str, str, str], WeComClient] | None = None


def wecom_client() -> WeComClient:
    """The process's WeCom client, built on first use from the settings.

    Rebuilt only when ``WECOM_API_BASE``, ``WECOM_CORP_ID`` or ``WECOM_SECRET`` change; every
    client shares one HTTP session (connection pool), and its token with every other container
    through the ``kv`` table.

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
        client = WeComClient(*key, session=_session, token_cache=KeyValueStore())
        _client = (key, client)
        return client
