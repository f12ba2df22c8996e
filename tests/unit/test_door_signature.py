"""The door signature scheme: t=<unix>,v1=<HMAC-SHA256 of "<t>.<body>">."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from chalicelib.domain.door_signature import SignatureError, sign, verify

SECRET = "door-secret"
BODY = b'{"events":[{"event_id":"e1","gate":"east"}]}'
T = 1_764_400_000


def reason(secret: str, header: str | None, body: bytes = BODY, now: float = T, **kwargs: int) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(secret, header, body, now, **kwargs)
    return caught.value.reason


def test_given_a_signed_body_then_it_verifies_and_returns_the_timestamp():
    header = sign(SECRET, BODY, T)

    assert header == f"t={T},v1=" + hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert verify(SECRET, header, BODY, now=T + 0.5) == T


def test_given_an_uppercase_or_spaced_header_then_it_still_verifies():
    t_part, v1_part = sign(SECRET, BODY, T).split(",")

    assert verify(SECRET, f"{t_part}, {v1_part.upper().replace('V1=', 'v1=')}", BODY, now=T) == T


def test_given_a_tampered_body_then_it_is_a_mismatch():
    assert reason(SECRET, sign(SECRET, BODY, T), body=BODY.replace(b"east", b"west")) == "mismatch"


def test_given_a_tampered_signature_then_it_is_a_mismatch():
    header = sign(SECRET, BODY, T)
    last = header[-1]
    tampered = header[:-1] + ("0" if last != "0" else "1")

    assert reason(SECRET, tampered) == "mismatch"


def test_given_a_tampered_timestamp_then_it_is_a_mismatch():
    signature = sign(SECRET, BODY, T).split(",")[1]

    assert reason(SECRET, f"t={T + 1},{signature}") == "mismatch"


def test_given_the_wrong_secret_then_it_is_a_mismatch():
    assert reason("another-secret", sign(SECRET, BODY, T)) == "mismatch"


@pytest.mark.parametrize("now", [T + 301, T - 301])
def test_given_a_timestamp_outside_the_tolerance_either_way_then_it_is_stale(now):
    assert reason(SECRET, sign(SECRET, BODY, T), now=now) == "stale"


@pytest.mark.parametrize("now", [T + 300, T - 300])
def test_given_a_timestamp_at_the_edge_of_the_tolerance_then_it_verifies(now):
    assert verify(SECRET, sign(SECRET, BODY, T), BODY, now) == T


def test_given_a_custom_tolerance_then_it_applies():
    assert reason(SECRET, sign(SECRET, BODY, T), now=T + 11, tolerance=10) == "stale"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_given_no_header_then_it_is_missing(header):
    assert reason(SECRET, header) == "missing"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "v1=abcdef",  # no timestamp
        f"t={T}",  # no signature
        f"t={T},v1=",  # empty signature
        "t=soon,v1=abcdef",
        f"t=-{T},v1=abcdef",
        f"t={T},t={T},v1=abcdef",  # two timestamps
        f"t={T},,v1=abcdef",
        "t=１２３,v1=abcdef",  # non-ASCII digits
        f"t={T},v1=" + "a" * 5000,
    ],
)
def test_given_a_malformed_header_then_it_is_malformed(header):
    assert reason(SECRET, header) == "malformed"


def test_given_a_non_ascii_signature_then_it_is_a_mismatch_not_a_crash():
    assert reason(SECRET, f"t={T},v1=é") == "mismatch"


def test_given_several_v1_entries_then_any_matching_one_verifies():
    # During a rotation the sender signs with the old and the new secret.
    old = sign("old-secret", BODY, T).split(",")[1]
    new = sign(SECRET, BODY, T).split(",")[1]

    assert verify(SECRET, f"t={T},{old},{new}", BODY, T) == T
    assert verify("old-secret", f"t={T},{old},{new}", BODY, T) == T
    assert reason("third-secret", f"t={T},{old},{new}") == "mismatch"


def test_given_an_unknown_scheme_alongside_v1_then_it_is_ignored():
    assert verify(SECRET, sign(SECRET, BODY, T) + ",v0=deadbeef", BODY, T) == T


def test_the_error_never_contains_the_header_or_secret():
    header = sign(SECRET, BODY, T)
    with pytest.raises(SignatureError) as caught:
        verify("wrong", header, BODY, T)

    assert str(caught.value) == "mismatch"
    assert isinstance(caught.value, ValueError)
