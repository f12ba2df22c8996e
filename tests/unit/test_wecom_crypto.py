"""Callback crypto against wechatpy's independent implementation, in both directions."""

from __future__ import annotations

import base64
import re

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto

from chalicelib.integrations.wecom_crypto import CallbackCrypto, CallbackError

TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP = "wx5823bf96d3bd56c7"
MESSAGES = [
    "<xml><Event><![CDATA[change_contact]]></Event></xml>",
    "<xml><Name><![CDATA[张三，计算机学院]]></Name></xml>",
    "x" * 32,  # a 32-byte message
    "y" * 26,  # 16 + 4 + 26 + 18 (corp id) = 64: the pad is a whole block of 32 bytes
    "",
]


@pytest.fixture
def ours():
    return CallbackCrypto(TOKEN, AES_KEY, CORP)


@pytest.fixture
def theirs():
    return WeChatCrypto(TOKEN, AES_KEY, CORP)


def encrypt_of(xml: str) -> tuple[str, str]:
    encrypted = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", xml).group(1)
    signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", xml).group(1)
    return encrypted, signature


@pytest.mark.parametrize("message", MESSAGES)
def test_we_open_what_wechatpy_seals(ours, theirs, message):
    envelope = theirs.encrypt_message(message, "nonce123", "1409304348")
    encrypted, signature = encrypt_of(envelope)
    ours.verify(signature, "1409304348", "nonce123", encrypted)
    assert ours.decrypt(encrypted) == message


@pytest.mark.parametrize("message", MESSAGES)
def test_wechatpy_opens_what_we_seal(ours, theirs, message):
    encrypted = ours.encrypt(message)
    signature = ours.signature("1409304348", "nonce123", encrypted)
    xml = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    assert theirs.decrypt_message(xml, signature, "1409304348", "nonce123") == message


def test_the_echostr_check_of_the_url_verification(ours, theirs):
    echo = ours.encrypt("1616140317555161061")
    signature = ours.signature("1409659589", "263014780", echo)
    assert theirs.check_signature(signature, "1409659589", "263014780", echo) == "1616140317555161061"


@pytest.mark.parametrize("signature", ["0" * 40, "é" * 40, "", "\x00"])
def test_a_bad_signature_is_refused(ours, signature):
    encrypted = ours.encrypt("hello")
    with pytest.raises(CallbackError, match="bad_signature"):
        ours.verify(signature, "1", "n", encrypted)


def test_the_26_byte_message_really_fills_a_whole_padding_block(ours):
    import base64 as b64

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = b64.b64decode(AES_KEY + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(b64.b64decode(ours.encrypt("y" * 26))) + decryptor.finalize()
    assert len(plain) == 96 and plain[-32:] == bytes([32]) * 32


@pytest.mark.parametrize("garbage", ["not base64!", base64.b64encode(b"short").decode(),
                                     base64.b64encode(b"\x00" * 32).decode(), ""])
def test_garbage_is_bad_ciphertext(ours, garbage):
    with pytest.raises(CallbackError, match="bad_ciphertext"):
        ours.decrypt(garbage)


def test_a_message_for_another_corp_is_refused(ours):
    other = CallbackCrypto(TOKEN, AES_KEY, "wwanothercorp")
    with pytest.raises(CallbackError, match="wrong_receiver"):
        ours.decrypt(other.encrypt("hello"))


def test_a_wrong_key_is_refused_at_construction():
    with pytest.raises(ValueError):
        CallbackCrypto(TOKEN, "short", CORP)
