"""Door gateway adapters: push a pass grant or revocation to the campus door access system.

The ``door-sync`` SQS consumer builds a :class:`DoorCommand` and calls ``gateway.apply(command)``.
Every adapter is idempotent (the queue delivers at least once, and a retry may follow a request
that did reach the gateway) and tells the consumer what to do with a failure:

* :class:`GatewayUnavailable`: try again later (connection error, timeout, HTTP 5xx/408/429, busy
  device); the consumer reports the message as failed so SQS redelivers it.
* :class:`GatewayRejected`: retrying cannot help (other 4xx, bad credentials, a device error);
  the message goes to the DLQ for a person to look at.

Adapters:

* :class:`JsonDoorGateway` speaks our JSON protocol (see its docstring; ``infra/local/fake_door.py``
  is a fake peer for it), signed with :mod:`chalicelib.domain.door_signature`.
* :class:`HikvisionGateway` drives Hikvision ISAPI access-control terminals directly.

The credential number (an ID-card or campus-card number) is personal data: it is sent to the
gateway and nowhere else. It is left out of ``repr(command)``, and no exception message contains
it or any response body (which could echo it): only an HTTP status and a short, letters-only code.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any

import requests
from requests.auth import HTTPDigestAuth

from chalicelib.domain.door_commands import (
    MAX_PASS_ID_LENGTH,
    DoorCommand,
    DoorGateway,
    GatewayRejected,
    GatewayUnavailable,
)
from chalicelib.domain.door_signature import sign

# The adapters' contract, defined in the domain, is importable from here too.
__all__ = ["MAX_PASS_ID_LENGTH", "DoorCommand", "DoorGateway", "GatewayRejected", "GatewayUnavailable",
           "HikvisionGateway", "JsonDoorGateway"]

SIGNATURE_HEADER = "X-Door-Signature"
# Besides 5xx: the gateway timed out reading our request, or asks us to slow down.
_RETRYABLE_STATUSES = frozenset({408, 429})
# Transport failures worth retrying. Anything else requests raises (a malformed URL, too many
# redirects) is a configuration error that a retry would only repeat.
_TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Letters only: a code from a response may go into an exception message, and no ID or card number
# can pass this filter even if the gateway echoed one.
_SAFE_CODE = re.compile(r"[A-Za-z_]{1,64}")




def _safe_code(value: Any) -> str | None:
    return value if isinstance(value, str) and _SAFE_CODE.fullmatch(value) else None


def _send(session: requests.Session, method: str, url: str, who: str, **kwargs: Any) -> requests.Response:
    """One HTTP request; transport failures become :class:`GatewayUnavailable` or
    :class:`GatewayRejected`, and 5xx/408/429 answers :class:`GatewayUnavailable`."""
    try:
        response = session.request(method, url, **kwargs)
    except _TRANSIENT_ERRORS as exc:
        # A read timeout may hide a request that was applied: retrying is safe because every
        # command is idempotent on the gateway side. The message names the error class only.
        raise GatewayUnavailable(f"{who} unreachable ({type(exc).__name__})") from exc
    except requests.RequestException as exc:
        raise GatewayRejected(f"{who} request failed ({type(exc).__name__})") from exc
    if response.status_code >= 500 or response.status_code in _RETRYABLE_STATUSES:
        raise GatewayUnavailable(f"{who} answered HTTP {response.status_code}", response.status_code)
    return response


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def command_payload(command: DoorCommand) -> dict[str, Any]:
    """The JSON body :class:`JsonDoorGateway` sends for ``command`` (times in UTC with ``Z``)."""
    return {
        "op": command.op,
        "pass_id": command.pass_id,
        "version": command.version,
        "name": command.name,
        "credential": {"kind": command.credential_kind, "number": command.credential_number},
        "gates": list(command.gates),
        "valid_from": _iso_utc(command.valid_from),
        "valid_to": _iso_utc(command.valid_to),
    }


class JsonDoorGateway:
    """Our JSON door gateway protocol.

    ``POST {url}/passes/{pass_id}`` with :func:`command_payload` as the body, and headers
    ``Idempotency-Key: <pass_id>:v<version>:<op>`` and ``X-Door-Signature`` (see
    :mod:`chalicelib.domain.door_signature`; signed at ``clock()``). Any 2xx means applied; the
    gateway answers a version it already has, or an older one, with 2xx and changes nothing.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        session: requests.Session | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url.rstrip("/")
        self._secret = secret
        self._session = session or requests.Session()
        self._timeout = timeout
        self._clock = clock

    def apply(self, command: DoorCommand) -> None:
        """Send ``command``; returns once the gateway accepted it.

        Raises:
            GatewayUnavailable: no answer, HTTP 5xx, 408 or 429.
            GatewayRejected: any other non-2xx answer.
        """
        # Sign exactly the bytes that are sent: the peer verifies the raw body.
        body = json.dumps(command_payload(command), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": command.idempotency_key,
            SIGNATURE_HEADER: sign(self._secret, body, int(self._clock())),
        }
        response = _send(
            self._session,
            "POST",
            f"{self._url}/passes/{command.pass_id}",
            "door gateway",
            data=body,
            headers=headers,
            timeout=self._timeout,
        )
        if not 200 <= response.status_code < 300:
            code = _safe_code(_json_or_none(response).get("code"))
            suffix = f" ({code})" if code else ""
            raise GatewayRejected(f"door gateway answered HTTP {response.status_code}{suffix}", response.status_code)


def _json_or_none(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object, or ``{}`` when it is not one (an HTML error page, XML...)."""
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


# --- Hikvision ISAPI ---------------------------------------------------------------------------

_USER_RECORD = "/ISAPI/AccessControl/UserInfo/Record?format=json"
_USER_MODIFY = "/ISAPI/AccessControl/UserInfo/Modify?format=json"
_USER_DELETE = "/ISAPI/AccessControl/UserInfo/Delete?format=json"
_CARD_RECORD = "/ISAPI/AccessControl/CardInfo/Record?format=json"
_ISAPI_OK = 1
_ISAPI_DEVICE_BUSY = 2
# ISAPI's time format: campus local time, no offset (the terminal has no time zone of its own).
_ISAPI_TIME = "%Y-%m-%dT%H:%M:%S"
# The terminals time-limit visitors through Valid; "1" is the built-in all-day plan template.
_ALL_DAY_PLAN = "1"
# Sub-status codes meaning "this employee number is taken" (firmware versions differ).
_USER_EXISTS = ("employeeNoAlreadyExist", "deviceUserAlreadyExist")


def _isapi_time(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime(_ISAPI_TIME)


def user_info_record(command: DoorCommand, door_numbers: Mapping[str, int], tz: tzinfo) -> dict[str, Any]:
    """The ISAPI ``UserInfo`` body (for ``Record`` and ``Modify``) granting ``command``'s gates.

    The pass id is the employee number; ``door_numbers`` maps each gate to its ISAPI door number;
    the validity window is written in ``tz`` (the campus time zone) without an offset.

    Raises:
        GatewayRejected: no gates, or a gate without a door number (a configuration error).
    """
    doors: list[int] = []
    for gate in command.gates:
        if gate not in door_numbers:
            raise GatewayRejected(f"no Hikvision door number configured for gate {gate!r}")
        if door_numbers[gate] not in doors:
            doors.append(door_numbers[gate])
    if not doors:
        raise GatewayRejected("a grant needs at least one gate")
    return {
        "UserInfo": {
            "employeeNo": command.pass_id,
            "name": command.name,
            "userType": "visitor",
            "Valid": {
                "enable": True,
                "beginTime": _isapi_time(command.valid_from, tz),
                "endTime": _isapi_time(command.valid_to, tz),
                "timeType": "local",
            },
            "doorRight": ",".join(str(door) for door in doors),
            "RightPlan": [{"doorNo": door, "planTemplateNo": _ALL_DAY_PLAN} for door in doors],
        }
    }


def user_info_delete(pass_id: str) -> dict[str, Any]:
    """The ISAPI ``UserInfo/Delete`` condition removing the employee ``pass_id``."""
    return {"UserInfoDelCond": {"EmployeeNoList": [{"employeeNo": pass_id}]}}


def card_info_record(command: DoorCommand) -> dict[str, Any]:
    """The ISAPI ``CardInfo/Record`` body binding the credential number to the pass's employee."""
    return {
        "CardInfo": {"employeeNo": command.pass_id, "cardNo": command.credential_number, "cardType": "normalCard"}
    }


@dataclass(frozen=True)
class _IsapiAnswer:
    http_status: int
    status_code: int | None  # ISAPI statusCode: 1 OK, 2 busy, 4 invalid operation, 6 invalid content...
    sub_status: str  # ISAPI subStatusCode, "" when absent

    @property
    def ok(self) -> bool:
        return 200 <= self.http_status < 300 and self.status_code in (None, _ISAPI_OK)

    def sub_status_ends_with(self, suffix: str) -> bool:
        return self.sub_status.lower().endswith(suffix.lower())


class HikvisionGateway:
    """Hikvision ISAPI access-control terminal (or a platform exposing the same ISAPI), digest auth.

    * grant: ``POST UserInfo/Record`` (:func:`user_info_record`); if the employee exists
      (``employeeNoAlreadyExist``), ``PUT UserInfo/Modify`` with the same body, so a repeat is
      harmless and a new version moves the window or gates. Then ``POST CardInfo/Record``
      (:func:`card_info_record`); a card that already exists counts as bound.
    * revoke: ``PUT UserInfo/Delete`` (:func:`user_info_delete`); the terminal drops the person's
      cards with them. An employee that does not exist counts as deleted.

    ISAPI answers errors with a ``ResponseStatus`` JSON (``statusCode``, ``subStatusCode``),
    usually with HTTP 400; only the letters-only ``subStatusCode`` reaches exception messages.
    """

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        door_numbers: Mapping[str, int],
        tz: tzinfo,
        session: requests.Session | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._url = url.rstrip("/")
        # One auth object for the gateway's life: it keeps the digest nonce, saving a 401 round trip.
        self._auth = HTTPDigestAuth(user, password)
        self._door_numbers = dict(door_numbers)
        self._tz = tz
        self._session = session or requests.Session()
        self._timeout = timeout

    def apply(self, command: DoorCommand) -> None:
        """Grant or revoke ``command`` on the terminal.

        Raises:
            GatewayUnavailable: no answer, HTTP 5xx/408/429, or the device is busy.
            GatewayRejected: bad credentials (401/403), a gate without a door number, or any other
                device error.
        """
        if command.op == "grant":
            self._grant(command)
        else:
            self._revoke(command)

    def _grant(self, command: DoorCommand) -> None:
        user = user_info_record(command, self._door_numbers, self._tz)
        answer = self._call("POST", _USER_RECORD, user)
        if not answer.ok:
            if not any(answer.sub_status_ends_with(code) for code in _USER_EXISTS):
                raise self._rejected("UserInfo/Record", answer)
            answer = self._call("PUT", _USER_MODIFY, user)
            if not answer.ok:
                raise self._rejected("UserInfo/Modify", answer)
        answer = self._call("POST", _CARD_RECORD, card_info_record(command))
        # "cardNoAlreadyExist" and its variants: the card is bound already (a repeated grant).
        if not answer.ok and not answer.sub_status_ends_with("AlreadyExist"):
            raise self._rejected("CardInfo/Record", answer)

    def _revoke(self, command: DoorCommand) -> None:
        answer = self._call("PUT", _USER_DELETE, user_info_delete(command.pass_id))
        # "employeeNoNotExist" and its variants: already gone, which is what a revoke wants.
        if not answer.ok and not answer.sub_status_ends_with("NotExist"):
            raise self._rejected("UserInfo/Delete", answer)

    def _call(self, method: str, path: str, body: dict[str, Any]) -> _IsapiAnswer:
        response = _send(
            self._session,
            method,
            self._url + path,
            "Hikvision terminal",
            data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            auth=self._auth,
            timeout=self._timeout,
        )
        payload = _json_or_none(response)
        # Most firmware answers a flat ResponseStatus; some wrap it.
        status = payload.get("ResponseStatus", payload)
        status = status if isinstance(status, dict) else {}
        status_code = status.get("statusCode")
        answer = _IsapiAnswer(
            http_status=response.status_code,
            status_code=status_code if isinstance(status_code, int) else None,
            sub_status=status.get("subStatusCode") if isinstance(status.get("subStatusCode"), str) else "",
        )
        if answer.status_code == _ISAPI_DEVICE_BUSY:
            raise GatewayUnavailable(
                f"Hikvision terminal busy on {path.split('?')[0]} (HTTP {answer.http_status})", answer.http_status
            )
        return answer

    @staticmethod
    def _rejected(action: str, answer: _IsapiAnswer) -> GatewayRejected:
        code = _safe_code(answer.sub_status)
        suffix = f" ({code})" if code else ""
        return GatewayRejected(f"Hikvision {action} failed: HTTP {answer.http_status}{suffix}", answer.http_status)
