"""Personal data at rest: ID-card numbers are stored encrypted, and found through a keyed hash.

* ``seal``/``open``: AES-256-GCM (``cryptography``), a random 96-bit nonce per value, the field
  name as associated data so a ciphertext cannot be moved to another field.
* ``lookup_key``: HMAC-SHA256 under a key derived from the same secret (HKDF), so the door system
  can find a person by ID number without anyone being able to read numbers out of the index.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1"


class ProtectionError(ValueError):
    """A key is malformed or a stored value cannot be opened with it."""


class FieldProtector:
    """Seals and opens personal fields under one 32-byte master key (base64 encoded)."""

    def __init__(self, master_key_b64: str) -> None:
        try:
            master = base64.b64decode(master_key_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ProtectionError("ID_CARD_KEY must be base64") from None
        if len(master) != 32:
            raise ProtectionError("ID_CARD_KEY must decode to 32 bytes")
        self._aead = AESGCM(_derive(master, b"campus-platform field encryption"))
        self._index_key = _derive(master, b"campus-platform lookup index")

    def seal(self, field: str, value: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), field.encode("utf-8"))
        return f"{_VERSION}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def open(self, field: str, token: str) -> str:
        version, _, payload = token.partition(":")
        try:
            raw = base64.b64decode(payload, validate=True)
            if version != _VERSION or len(raw) < 13:
                raise ValueError
            return self._aead.decrypt(raw[:12], raw[12:], field.encode("utf-8")).decode("utf-8")
        except (ValueError, binascii.Error, InvalidTag):
            raise ProtectionError(f"stored {field} cannot be opened with this key") from None

    def lookup_key(self, field: str, value: str) -> str:
        return hmac.new(self._index_key, f"{field}:{value}".encode(), hashlib.sha256).hexdigest()


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)
