"""The request signature shared by the door webhook and our JSON door gateway protocol.

The sender puts ``X-Door-Signature: t=<unix seconds>,v1=<hex>`` on the request, where ``<hex>`` is
the HMAC-SHA256 of ``b"<t>." + raw body`` keyed with the shared secret. Signing the timestamp with
the body stops a captured request from being replayed outside the tolerance window. A header may
carry several ``v1=`` entries (one per secret during a rotation); any one matching is enough.
Unknown keys (say a future ``v2=``) are ignored so the scheme can evolve.

Pure: no I/O. The caller passes the clock (``now``) in.
"""

from __future__ import annotations

import hashlib
import hmac

DEFAULT_TOLERANCE = 300  # seconds either side of now
# A real header is under 200 bytes; refusing huge ones bounds the work an attacker can cause.
_MAX_HEADER_LENGTH = 2048


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match.

    ``reason`` is one of ``"missing"``, ``"malformed"``, ``"stale"``, ``"mismatch"``; it never
    contains the header value, the body or the secret.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _digest(secret: str, body: bytes, t: int) -> str:
    return hmac.new(secret.encode("utf-8"), f"{t}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int) -> str:
    """The header value for ``body`` sent at unix time ``t``: ``t=<t>,v1=<hex>``."""
    return f"t={t},v1={_digest(secret, body, t)}"


def _parse(header: str) -> tuple[int, list[str]]:
    """``(t, [v1 values])`` from a header value; raises ``SignatureError("malformed")``."""
    if len(header) > _MAX_HEADER_LENGTH:
        raise SignatureError("malformed")
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not value:
            raise SignatureError("malformed")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value.lower())
    # Exactly one timestamp: two would make it ambiguous which one was signed.
    # At most 12 digits and no leading zero: one timestamp has one spelling (replays are keyed on
    # it) and no huge number reaches the arithmetic.
    if (len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit() or not signatures
            or len(timestamps[0]) > 12 or (len(timestamps[0]) > 1 and timestamps[0].startswith("0"))):
        raise SignatureError("malformed")
    return int(timestamps[0]), signatures


def signed_time(header: str) -> int:
    """The ``t`` of a header :func:`verify` accepted. Raises: SignatureError("malformed")."""
    return _parse(header)[0]


def verify(secret: str, header: str | None, body: bytes, now: float, tolerance: int = DEFAULT_TOLERANCE) -> int:
    """Check a signature header against the raw request body.

    Args:
        secret: the shared secret.
        header: the ``X-Door-Signature`` value, or None when the request had none.
        body: the raw body bytes exactly as received (not re-serialised JSON).
        now: the current unix time in seconds.
        tolerance: how far (seconds) the signed timestamp may be from ``now``, either way.

    Returns:
        The signed timestamp ``t``.

    Raises:
        SignatureError: ``missing`` (no or empty header), ``malformed`` (no single integer ``t`` or
            no ``v1``), ``stale`` (``t`` outside ``now`` +- ``tolerance``) or ``mismatch`` (no ``v1``
            is the HMAC of this body and ``t`` under ``secret``).
    """
    if not header or not header.strip():
        raise SignatureError("missing")
    t, candidates = _parse(header)
    if abs(now - t) > tolerance:
        raise SignatureError("stale")
    expected = _digest(secret, body, t).encode("ascii")
    # Compare every candidate (no early exit) in constant time, as bytes: compare_digest refuses
    # non-ASCII str, and a hostile header must get "mismatch", not a TypeError.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode("utf-8"))
    if not matched:
        raise SignatureError("mismatch")
    return t
