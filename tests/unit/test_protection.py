"""Sealed personal fields."""

import base64

import pytest

from chalicelib.domain.protection import FieldProtector, ProtectionError

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER = base64.b64encode(bytes(range(1, 33))).decode()


def test_a_sealed_value_opens_with_the_same_key_and_field_only():
    protector = FieldProtector(KEY)
    sealed = protector.seal("id_number", "11010519491231002X")
    assert "11010519491231002X" not in sealed
    assert protector.open("id_number", sealed) == "11010519491231002X"
    with pytest.raises(ProtectionError):
        protector.open("mobile", sealed)
    with pytest.raises(ProtectionError):
        FieldProtector(OTHER).open("id_number", sealed)


def test_sealing_twice_differs_but_the_lookup_key_is_stable_and_keyed():
    protector = FieldProtector(KEY)
    assert protector.seal("f", "v") != protector.seal("f", "v")
    assert protector.lookup_key("id_number", "x") == FieldProtector(KEY).lookup_key("id_number", "x")
    assert protector.lookup_key("id_number", "x") != FieldProtector(OTHER).lookup_key("id_number", "x")


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_keys_are_refused(key):
    with pytest.raises(ProtectionError):
        FieldProtector(key)


def test_tampered_ciphertext_is_refused():
    protector = FieldProtector(KEY)
    sealed = protector.seal("f", "value")
    raw = bytearray(base64.b64decode(sealed.split(":", 1)[1]))
    raw[-1] ^= 1
    with pytest.raises(ProtectionError):
        protector.open("f", "v1:" + base64.b64encode(bytes(raw)).decode())
