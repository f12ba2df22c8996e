"""WeCom callback crypto (企业微信回调加解密), as WeCom publishes it.

* Signature: SHA-1 hex of the sorted concatenation of token, timestamp, nonce and the ciphertext.
* Key: base64 of the 43-character EncodingAESKey plus "=", 32 bytes; IV: its first 16 bytes.
* Cipher: AES-256-CBC, PKCS#7 padding to 32-byte blocks (not AES's 16).
* Plaintext: 16 random bytes, the message length as 4 bytes big-endian, the message (UTF-8), the
  receive id (the corp id for an internal app).

Written with ``cryptography``'s primitives because WeCom's framing is bespoke; the tests check it
against an independent implementation (wechatpy) in both directions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class CallbackError(ValueError):
    """A callback failed verification; ``reason`` is a stable code, never the payload."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallbackCrypto:
    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("WECOM_ENCODING_AES_KEY must be WeCom's 43-character key") from None
        if len(encoding_aes_key) != 43 or len(key) != 32:
            raise ValueError("WECOM_ENCODING_AES_KEY must be WeCom's 43-character key")
        self._token = token
        self._key = key
        self._receive_id = receive_id

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return hashlib.sha1("".join(sorted([self._token, timestamp, nonce, encrypted])).encode()).hexdigest()  # noqa: S324

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = self.signature(timestamp, nonce, encrypted)
        # Bytes, not str: compare_digest refuses non-ASCII str, and a forged signature may be anything.
        if not hmac.compare_digest(expected.encode(), (msg_signature or "").lower().encode("utf-8", "replace")):
            raise CallbackError("bad_signature")

    def decrypt(self, encrypted: str) -> str:
        """The message inside ``encrypted``.

        Raises:
            CallbackError: ``bad_ciphertext`` (not base64, bad padding or framing) or
                ``wrong_receiver`` (sealed for another corp).
        """
        try:
            raw = base64.b64decode(encrypted, validate=True)
            if not raw or len(raw) % 16:
                raise ValueError
            decryptor = self._cipher().decryptor()
            padded = decryptor.update(raw) + decryptor.finalize()
            unpadder = padding.PKCS7(256).unpadder()
            plain = unpadder.update(padded) + unpadder.finalize()
            (length,) = struct.unpack(">I", plain[16:20])
            message = plain[20 : 20 + length]
            receive_id = plain[20 + length :]
            if len(message) != length:
                raise ValueError
            text = message.decode("utf-8")
        except (ValueError, struct.error, binascii.Error, UnicodeDecodeError):
            raise CallbackError("bad_ciphertext") from None
        if not hmac.compare_digest(receive_id, self._receive_id.encode()):
            raise CallbackError("wrong_receiver")
        return text

    def encrypt(self, message: str, random16: bytes | None = None) -> str:
        """Seal ``message`` for this receive id (replies, and the local fake WeCom peer)."""
        body = message.encode("utf-8")
        plain = (random16 or os.urandom(16)) + struct.pack(">I", len(body)) + body + self._receive_id.encode()
        padder = padding.PKCS7(256).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))
