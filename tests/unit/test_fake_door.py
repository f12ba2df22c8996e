"""The fake door gateway peer, driven by the real JsonDoorGateway over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone

import pytest
import pytest_socket
import requests

from chalicelib.domain.door_signature import sign
from chalicelib.integrations.door_gateway import DoorCommand, GatewayRejected, GatewayUnavailable, JsonDoorGateway
from infra.local.fake_door import FakeDoor, mask_credential

SECRET = "fake-door-secret"
ID_NUMBER = "370102199001011234"
PASS_ID = "20261129T083000-ab12cd34ef56"
NOW = 1_764_400_000.0

GRANT = DoorCommand(
    op="grant",
    pass_id=PASS_ID,
    version=1,
    name="张三",
    credential_kind="id_card",
    credential_number=ID_NUMBER,
    gates=("east", "west"),
    valid_from=datetime(2026, 11, 29, 0, 30, tzinfo=timezone.utc),
    valid_to=datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc),
)


@pytest.fixture(autouse=True)
def _loopback(_no_network: None) -> Iterator[None]:
    """Unit tests run without sockets; these talk to a server on 127.0.0.1 and nothing else."""
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(["127.0.0.1"], allow_unix_socket=True)
    yield
    pytest_socket.disable_socket(allow_unix_socket=True)


@pytest.fixture
def fake() -> Iterator[FakeDoor]:
    with FakeDoor(SECRET, clock=lambda: NOW) as peer:
        yield peer


@pytest.fixture
def gateway(fake: FakeDoor) -> JsonDoorGateway:
    return JsonDoorGateway(fake.url, SECRET, clock=lambda: NOW, timeout=5)


def inspect(fake: FakeDoor, path: str):
    return requests.get(f"{fake.url}{path}", timeout=5).json()


def test_given_a_grant_then_the_pass_is_recorded_with_a_masked_credential(fake, gateway):
    gateway.apply(GRANT)

    assert fake.passes == {
        PASS_ID: {
            "state": "granted",
            "version": 1,
            "gates": ["east", "west"],
            "valid_from": "2026-11-29T00:30:00Z",
            "valid_to": "2026-11-29T10:00:00Z",
            "credential": "3701**********1234",
        }
    }
    assert fake.log == [{"op": "grant", "pass_id": PASS_ID, "version": 1, "at": "2025-11-29T07:06:40.000Z"}]
    # The inspection endpoints show the same, and the full number is nowhere.
    assert inspect(fake, "/_passes") == fake.passes
    assert inspect(fake, "/_log") == fake.log
    assert ID_NUMBER not in json.dumps([fake.passes, fake.log])


def test_given_the_same_grant_twice_then_it_is_applied_once(fake, gateway):
    gateway.apply(GRANT)
    gateway.apply(GRANT)

    assert [entry["version"] for entry in fake.log] == [1]


def test_given_an_older_version_after_a_newer_one_then_it_changes_nothing(fake, gateway):
    gateway.apply(replace(GRANT, version=2, gates=("south",)))
    gateway.apply(GRANT)  # version 1, delivered late

    assert fake.passes[PASS_ID]["gates"] == ["south"]
    assert fake.passes[PASS_ID]["version"] == 2
    assert len(fake.log) == 1


def test_given_a_revoke_with_a_newer_version_then_the_pass_is_revoked(fake, gateway):
    gateway.apply(GRANT)
    gateway.apply(replace(GRANT, op="revoke", version=2))

    assert fake.passes[PASS_ID]["state"] == "revoked"
    assert [(entry["op"], entry["version"]) for entry in fake.log] == [("grant", 1), ("revoke", 2)]


def test_given_an_outage_then_the_gateway_is_unavailable_and_nothing_is_recorded(fake, gateway):
    fake.outage(True)
    with pytest.raises(GatewayUnavailable) as caught:
        gateway.apply(GRANT)

    assert caught.value.status == 503
    assert fake.passes == {} and fake.log == []

    fake.outage(False)
    gateway.apply(GRANT)
    assert fake.passes[PASS_ID]["state"] == "granted"


def test_given_an_outage_over_http_then_it_behaves_the_same(fake, gateway):
    assert requests.post(f"{fake.url}/_control", json={"down": True}, timeout=5).json() == {"down": True}
    with pytest.raises(GatewayUnavailable):
        gateway.apply(GRANT)
    # The inspection endpoints keep working during the outage.
    assert inspect(fake, "/_passes") == {}

    requests.post(f"{fake.url}/_control", json={"down": False}, timeout=5)
    gateway.apply(GRANT)
    assert len(fake.log) == 1


def test_given_a_bad_control_body_then_it_is_a_400(fake):
    assert requests.post(f"{fake.url}/_control", json={"down": "yes"}, timeout=5).status_code == 400


def test_given_the_wrong_secret_then_the_gateway_is_rejected_with_401(fake):
    with pytest.raises(GatewayRejected) as caught:
        JsonDoorGateway(fake.url, "wrong-secret", clock=lambda: NOW).apply(GRANT)

    assert caught.value.status == 401
    assert fake.passes == {}


def test_given_a_stale_signature_then_it_is_a_401(fake):
    with pytest.raises(GatewayRejected) as caught:
        JsonDoorGateway(fake.url, SECRET, clock=lambda: NOW - 3600).apply(GRANT)

    assert caught.value.status == 401


def test_given_an_unsigned_or_inconsistent_request_then_it_is_refused(fake):
    body = json.dumps({"op": "grant", "pass_id": "other", "version": 1}).encode()
    url = f"{fake.url}/passes/{PASS_ID}"

    unsigned = requests.post(url, data=body, timeout=5)
    signed = requests.post(url, data=body, headers={"X-Door-Signature": sign(SECRET, body, int(NOW))}, timeout=5)

    assert unsigned.status_code == 401
    assert signed.status_code == 400
    assert fake.log == []


def test_given_an_unknown_path_then_it_is_a_404(fake):
    assert requests.get(f"{fake.url}/nowhere", timeout=5).status_code == 404


@pytest.mark.parametrize(
    ("number", "masked"),
    [("370102199001011234", "3701**********1234"), ("20230001", "****0001"), ("1234", "****")],
)
def test_mask_credential(number, masked):
    assert mask_credential(number) == masked
