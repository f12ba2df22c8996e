"""A FAKE door gateway peer for the local stack and tests; never used by production code.

It speaks the protocol of :class:`chalicelib.integrations.door_gateway.JsonDoorGateway` on
loopback, in a daemon thread, and keeps just enough state to show what the doors would do:

* ``POST /passes/<pass_id>`` with the JSON command, ``Idempotency-Key: <pass_id>:v<version>:<op>``
  and ``X-Door-Signature`` (:mod:`chalicelib.domain.door_signature`). A bad or missing signature
  gets 401, a body that is not a command (or disagrees with the path or key) 400. A version at or
  below the one already applied for the pass gets 200 ``{"status": "unchanged"}`` and changes
  nothing (that is how the real gateway makes redelivery and reordering harmless); otherwise the
  command is applied and answered 200 ``{"status": "applied"}``.

Not part of the protocol, for people and tests:

* ``GET /_passes``: :attr:`FakeDoor.passes`, pass id -> ``{"state": "granted"|"revoked",
  "version", "gates", "valid_from", "valid_to", "credential"}``. The credential is kept masked
  (``3701**********1234``): the fake never holds a full ID or card number.
* ``GET /_log``: :attr:`FakeDoor.log`, every applied command (``op``, ``pass_id``, ``version``, ``at``).
* ``POST /_control`` ``{"down": true|false}``: the same as :meth:`FakeDoor.outage`, for a test in
  another process. While down, every protocol request gets HTTP 503 and nothing is recorded.

Unknown paths get 404.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from chalicelib.domain.door_signature import SignatureError, verify
from infra.local.peer import LoopbackPeer

SIGNATURE_HEADER = "X-Door-Signature"
_PASSES_PREFIX = "/passes/"
_COMMAND_FIELDS = ("op", "pass_id", "version", "credential", "gates", "valid_from", "valid_to")

Answer = tuple[int, Any]  # HTTP status and a JSON body


def mask_credential(number: str) -> str:
    """``370102199001011234`` -> ``3701**********1234``; a short card number keeps its last 4 only."""
    if len(number) >= 12:
        return number[:4] + "*" * (len(number) - 8) + number[-4:]
    if len(number) > 4:
        return "*" * (len(number) - 4) + number[-4:]
    return "*" * len(number)


def _command_problem(command: Any, pass_id: str, idempotency_key: str | None) -> str | None:
    """Why ``command`` is not a valid protocol command for ``pass_id``, or None."""
    if not isinstance(command, dict) or any(name not in command for name in _COMMAND_FIELDS):
        return "the body must be a JSON command with " + ", ".join(_COMMAND_FIELDS)
    if command["op"] not in ("grant", "revoke"):
        return "op must be grant or revoke"
    if command["pass_id"] != pass_id:
        return "pass_id differs from the path"
    if not isinstance(command["version"], int) or isinstance(command["version"], bool):
        return "version must be an integer"
    credential = command["credential"]
    if not isinstance(credential, dict) or not isinstance(credential.get("number"), str):
        return "credential must be {kind, number}"
    if idempotency_key != f"{pass_id}:v{command['version']}:{command['op']}":
        return "Idempotency-Key must be <pass_id>:v<version>:<op>"
    return None


class FakeDoor(LoopbackPeer):
    """A fake door gateway checking signatures with ``secret``. Start it, point a gateway at ``url``.

    ``clock`` (unix seconds) is what signatures are checked against, and stamps ``log`` entries.
    """

    peer_name = "fake-door"

    def __init__(
        self,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._address = (host, port)
        self._clock = clock
        self.passes: dict[str, dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []
        self._down = False
        self._lock = threading.Lock()

    def _make_server(self) -> _Server:
        return _Server(self._address, _Handler, self)

    def outage(self, down: bool) -> None:
        """While ``down``, answer every protocol request with HTTP 503 and record nothing."""
        with self._lock:
            self._down = down

    # --- serving ------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        """``(HTTP status, JSON body)`` for one request; applies it when it is a valid command.

        ``headers`` are keyed by lower-case name; ``raw`` is the body as received (it is signed).
        """
        with self._lock:
            if (method, path) == ("GET", "/_passes"):
                return 200, json.loads(json.dumps(self.passes))  # a copy, safe outside the lock
            if (method, path) == ("GET", "/_log"):
                return 200, list(self.log)
            if (method, path) == ("POST", "/_control"):
                return self._control(raw)
            if method == "POST" and path.startswith(_PASSES_PREFIX):
                if self._down:
                    return 503, {"status": "unavailable", "message": "outage injected"}
                return self._apply(unquote(path.removeprefix(_PASSES_PREFIX)), headers, raw)
            return 404, {"status": "not_found", "message": f"no such endpoint in the fake door: {method} {path}"}

    def _control(self, raw: bytes) -> Answer:
        try:
            down = json.loads(raw).get("down")
        except (ValueError, AttributeError):
            down = None
        if not isinstance(down, bool):
            return 400, {"status": "bad_request", "message": 'send {"down": true|false}'}
        self._down = down
        return 200, {"down": down}

    def _apply(self, pass_id: str, headers: dict[str, str], raw: bytes) -> Answer:
        try:
            verify(self._secret, headers.get(SIGNATURE_HEADER.lower()), raw, self._clock())
        except SignatureError as exc:
            return 401, {"status": "bad_signature", "message": exc.reason}
        try:
            command = json.loads(raw)
        except ValueError:
            command = None
        problem = _command_problem(command, pass_id, headers.get("idempotency-key"))
        if problem is not None:
            return 400, {"status": "bad_request", "message": problem}
        current = self.passes.get(pass_id)
        if current is not None and command["version"] <= current["version"]:
            return 200, {"status": "unchanged", "version": current["version"]}
        self.passes[pass_id] = {
            "state": "granted" if command["op"] == "grant" else "revoked",
            "version": command["version"],
            "gates": list(command["gates"]),
            "valid_from": command["valid_from"],
            "valid_to": command["valid_to"],
            "credential": mask_credential(command["credential"]["number"]),
        }
        at = datetime.fromtimestamp(self._clock(), timezone.utc).isoformat(timespec="milliseconds")
        self.log.append(
            {"op": command["op"], "pass_id": pass_id, "version": command["version"], "at": at.replace("+00:00", "Z")}
        )
        return 200, {"status": "applied", "version": command["version"]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeDoor) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self._serve("GET", b"")

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        self._serve("POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _serve(self, method: str, raw: bytes) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer = self.server.fake.answer(method, urlsplit(self.path).path, headers, raw)
        payload = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        # The default writes every request to stderr; tests inspect `log` and `passes` instead.
        return
