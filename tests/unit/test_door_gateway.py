"""Door gateway adapters against mocked HTTP (responses): the JSON protocol and Hikvision ISAPI."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
import responses
from responses import matchers

from chalicelib.domain.door_signature import verify
from chalicelib.integrations.door_gateway import (
    DoorCommand,
    GatewayRejected,
    GatewayUnavailable,
    HikvisionGateway,
    JsonDoorGateway,
    card_info_record,
    user_info_delete,
    user_info_record,
)

ID_NUMBER = "370102199001011234"
SECRET = "door-gateway-secret"
NOW = 1_764_400_000.0
GATEWAY = "https://door.example.edu/api/"
PASS_URL = "https://door.example.edu/api/passes/20261129T083000-ab12cd34ef56"
HIK = "http://10.0.0.20"
SHANGHAI = ZoneInfo("Asia/Shanghai")
DOORS = {"east": 1, "west": 2, "south": 3}

GRANT = DoorCommand(
    op="grant",
    pass_id="20261129T083000-ab12cd34ef56",
    version=3,
    name="张三",
    credential_kind="id_card",
    credential_number=ID_NUMBER,
    gates=("east", "west"),
    valid_from=datetime(2026, 11, 29, 0, 30, tzinfo=timezone.utc),
    valid_to=datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc),
)
REVOKE = replace(GRANT, op="revoke", version=4)


def isapi_status(status_code: int, sub: str, string: str = "Invalid Content") -> dict:
    return {"statusCode": status_code, "statusString": string, "subStatusCode": sub, "errorCode": 1610637344}


ISAPI_OK = isapi_status(1, "ok", "OK")


@pytest.fixture
def json_gateway() -> JsonDoorGateway:
    return JsonDoorGateway(GATEWAY, SECRET, clock=lambda: NOW)


@pytest.fixture
def hik() -> HikvisionGateway:
    return HikvisionGateway(HIK, "admin", "hik-password", DOORS, SHANGHAI)


def test_the_credential_number_is_not_in_the_command_repr():
    assert ID_NUMBER not in repr(GRANT)
    assert "20261129T083000-ab12cd34ef56" in repr(GRANT)


@pytest.mark.parametrize(
    "change",
    [
        {"op": "suspend"},
        {"pass_id": ""},
        {"pass_id": "x" * 33},
        {"valid_from": datetime(2026, 11, 29, 8, 30)},
        {"valid_to": datetime(2026, 11, 29, 18, 0)},
    ],
)
def test_given_an_invalid_command_then_it_cannot_be_built(change):
    with pytest.raises(ValueError) as caught:
        replace(GRANT, **change)

    assert ID_NUMBER not in str(caught.value)


# --- JsonDoorGateway ----------------------------------------------------------------------------


@responses.activate
def test_given_a_grant_then_it_posts_the_signed_json_command(json_gateway):
    responses.post(PASS_URL, json={"status": "applied"})

    json_gateway.apply(GRANT)

    request = responses.calls[0].request
    assert json.loads(request.body) == {
        "op": "grant",
        "pass_id": "20261129T083000-ab12cd34ef56",
        "version": 3,
        "name": "张三",
        "credential": {"kind": "id_card", "number": ID_NUMBER},
        "gates": ["east", "west"],
        "valid_from": "2026-11-29T00:30:00Z",
        "valid_to": "2026-11-29T10:00:00Z",
    }
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "20261129T083000-ab12cd34ef56:v3:grant"
    # The signature covers the exact bytes sent, at the injected clock's time.
    assert verify(SECRET, request.headers["X-Door-Signature"], request.body, now=NOW) == int(NOW)


@responses.activate
def test_given_a_revoke_then_its_idempotency_key_names_the_version_and_op(json_gateway):
    responses.post(PASS_URL, status=204)

    json_gateway.apply(REVOKE)

    request = responses.calls[0].request
    assert json.loads(request.body)["op"] == "revoke"
    assert request.headers["Idempotency-Key"] == "20261129T083000-ab12cd34ef56:v4:revoke"
    assert verify(SECRET, request.headers["X-Door-Signature"], request.body, now=NOW) == int(NOW)


@responses.activate
def test_given_a_non_utc_window_then_it_is_sent_in_utc(json_gateway):
    responses.post(PASS_URL, json={})
    local = replace(GRANT, valid_from=datetime(2026, 11, 29, 8, 30, tzinfo=SHANGHAI))

    json_gateway.apply(local)

    assert json.loads(responses.calls[0].request.body)["valid_from"] == "2026-11-29T00:30:00Z"


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
@responses.activate
def test_given_a_retryable_status_then_the_gateway_is_unavailable(json_gateway, status):
    responses.post(PASS_URL, status=status, json={"error": f"cannot store {ID_NUMBER}"})

    with pytest.raises(GatewayUnavailable) as caught:
        json_gateway.apply(GRANT)

    assert caught.value.status == status
    assert str(caught.value) == f"door gateway answered HTTP {status}"


@pytest.mark.parametrize("error", [requests.ConnectTimeout(), requests.ReadTimeout(), requests.ConnectionError()])
@responses.activate
def test_given_no_answer_then_the_gateway_is_unavailable(json_gateway, error):
    responses.post(PASS_URL, body=error)

    with pytest.raises(GatewayUnavailable) as caught:
        json_gateway.apply(GRANT)

    assert caught.value.status is None
    assert ID_NUMBER not in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
@responses.activate
def test_given_a_client_error_then_the_command_is_rejected_without_echoing_the_body(json_gateway, status):
    # The gateway echoes the credential number: it must not reach the exception.
    responses.post(PASS_URL, status=status, json={"code": "invalid_credential", "message": f"bad {ID_NUMBER}"})

    with pytest.raises(GatewayRejected) as caught:
        json_gateway.apply(GRANT)

    assert caught.value.status == status
    assert str(caught.value) == f"door gateway answered HTTP {status} (invalid_credential)"
    assert ID_NUMBER not in str(caught.value)


@responses.activate
def test_given_an_error_code_carrying_digits_then_it_is_left_out_of_the_message(json_gateway):
    responses.post(PASS_URL, status=400, json={"code": ID_NUMBER})

    with pytest.raises(GatewayRejected) as caught:
        json_gateway.apply(GRANT)

    assert str(caught.value) == "door gateway answered HTTP 400"


# --- Hikvision ISAPI: body builders ------------------------------------------------------------


def test_user_info_record_writes_the_window_in_campus_local_time_and_maps_gates_to_doors():
    body = user_info_record(GRANT, DOORS, SHANGHAI)

    assert body == {
        "UserInfo": {
            "employeeNo": "20261129T083000-ab12cd34ef56",
            "name": "张三",
            "userType": "visitor",
            "Valid": {
                "enable": True,
                "beginTime": "2026-11-29T08:30:00",  # 00:30 UTC is 08:30 in Shanghai
                "endTime": "2026-11-29T18:00:00",
                "timeType": "local",
            },
            "doorRight": "1,2",
            "RightPlan": [{"doorNo": 1, "planTemplateNo": "1"}, {"doorNo": 2, "planTemplateNo": "1"}],
        }
    }


def test_user_info_record_crosses_midnight_in_local_time():
    late = replace(GRANT, valid_to=datetime(2026, 11, 29, 16, 30, tzinfo=timezone.utc))

    assert user_info_record(late, DOORS, SHANGHAI)["UserInfo"]["Valid"]["endTime"] == "2026-11-30T00:30:00"


def test_user_info_record_lists_a_shared_door_once():
    both = replace(GRANT, gates=("east", "north"))

    body = user_info_record(both, {"east": 1, "north": 1}, SHANGHAI)["UserInfo"]

    assert body["doorRight"] == "1"
    assert body["RightPlan"] == [{"doorNo": 1, "planTemplateNo": "1"}]


@pytest.mark.parametrize("gates", [("east", "north"), ()])
def test_user_info_record_refuses_gates_without_door_numbers(gates):
    with pytest.raises(GatewayRejected):
        user_info_record(replace(GRANT, gates=gates), DOORS, SHANGHAI)


def test_card_and_delete_bodies():
    assert card_info_record(GRANT) == {
        "CardInfo": {"employeeNo": "20261129T083000-ab12cd34ef56", "cardNo": ID_NUMBER, "cardType": "normalCard"}
    }
    assert user_info_delete("p1") == {"UserInfoDelCond": {"EmployeeNoList": [{"employeeNo": "p1"}]}}


# --- Hikvision ISAPI: the exchange ---------------------------------------------------------------

USER_RECORD = f"{HIK}/ISAPI/AccessControl/UserInfo/Record"
USER_MODIFY = f"{HIK}/ISAPI/AccessControl/UserInfo/Modify"
USER_DELETE = f"{HIK}/ISAPI/AccessControl/UserInfo/Delete"
CARD_RECORD = f"{HIK}/ISAPI/AccessControl/CardInfo/Record"
JSON_FORMAT = matchers.query_param_matcher({"format": "json"})


def sent(index: int) -> tuple[str, str, dict]:
    request = responses.calls[index].request
    return request.method, request.url.split("?")[0], json.loads(request.body)


@responses.activate
def test_given_a_new_pass_then_the_user_is_recorded_and_the_card_bound(hik):
    responses.post(USER_RECORD, json=ISAPI_OK, match=[JSON_FORMAT])
    responses.post(CARD_RECORD, json=ISAPI_OK, match=[JSON_FORMAT])

    hik.apply(GRANT)

    assert [sent(i)[:2] for i in range(len(responses.calls))] == [("POST", USER_RECORD), ("POST", CARD_RECORD)]
    assert sent(0)[2] == user_info_record(GRANT, DOORS, SHANGHAI)
    assert sent(1)[2] == card_info_record(GRANT)


@responses.activate
def test_given_the_employee_already_exists_then_the_same_body_is_sent_as_a_modify(hik):
    responses.post(USER_RECORD, status=400, json=isapi_status(6, "employeeNoAlreadyExist"), match=[JSON_FORMAT])
    responses.put(USER_MODIFY, json=ISAPI_OK, match=[JSON_FORMAT])
    responses.post(CARD_RECORD, status=400, json=isapi_status(6, "cardNoAlreadyExist"))

    hik.apply(GRANT)

    assert [sent(i)[:2] for i in range(3)] == [("POST", USER_RECORD), ("PUT", USER_MODIFY), ("POST", CARD_RECORD)]
    assert sent(1)[2] == sent(0)[2]


@responses.activate
def test_given_the_modify_fails_then_the_grant_is_rejected_and_no_card_is_bound(hik):
    responses.post(USER_RECORD, status=400, json=isapi_status(6, "employeeNoAlreadyExist"))
    responses.put(USER_MODIFY, status=400, json=isapi_status(6, "badParameters"))

    with pytest.raises(GatewayRejected) as caught:
        hik.apply(GRANT)

    assert str(caught.value) == "Hikvision UserInfo/Modify failed: HTTP 400 (badParameters)"
    assert len(responses.calls) == 2


@responses.activate
def test_given_the_card_is_refused_then_the_grant_is_rejected_without_the_number(hik):
    responses.post(USER_RECORD, json=ISAPI_OK)
    responses.post(CARD_RECORD, status=400, json={**isapi_status(6, "cardNoError"), "cardNo": ID_NUMBER})

    with pytest.raises(GatewayRejected) as caught:
        hik.apply(GRANT)

    assert str(caught.value) == "Hikvision CardInfo/Record failed: HTTP 400 (cardNoError)"
    assert ID_NUMBER not in str(caught.value)


@responses.activate
def test_given_a_device_error_in_an_http_200_then_the_grant_is_rejected(hik):
    responses.post(USER_RECORD, json=isapi_status(4, "notSupport", "Invalid Operation"))

    with pytest.raises(GatewayRejected):
        hik.apply(GRANT)


@responses.activate
def test_given_a_revoke_then_the_user_is_deleted(hik):
    responses.put(USER_DELETE, json=ISAPI_OK, match=[JSON_FORMAT])

    hik.apply(REVOKE)

    assert sent(0) == ("PUT", USER_DELETE, user_info_delete(GRANT.pass_id))


@pytest.mark.parametrize("sub", ["employeeNoNotExist", "userNotExist"])
@responses.activate
def test_given_a_revoke_of_a_missing_employee_then_it_succeeds(hik, sub):
    responses.put(USER_DELETE, status=400, json=isapi_status(6, sub))

    hik.apply(REVOKE)

    assert len(responses.calls) == 1


@pytest.mark.parametrize("status", [401, 403])
@responses.activate
def test_given_bad_device_credentials_then_the_command_is_rejected(hik, status):
    responses.post(USER_RECORD, status=status, body="<html>Unauthorized</html>")

    with pytest.raises(GatewayRejected) as caught:
        hik.apply(GRANT)

    assert caught.value.status == status


@pytest.mark.parametrize("status", [500, 503])
@responses.activate
def test_given_a_server_error_then_the_terminal_is_unavailable(hik, status):
    responses.put(USER_DELETE, status=status)

    with pytest.raises(GatewayUnavailable):
        hik.apply(REVOKE)


@responses.activate
def test_given_a_timeout_then_the_terminal_is_unavailable(hik):
    responses.post(USER_RECORD, body=requests.ReadTimeout())

    with pytest.raises(GatewayUnavailable) as caught:
        hik.apply(GRANT)

    assert ID_NUMBER not in str(caught.value)


@responses.activate
def test_given_the_card_call_times_out_after_the_user_was_recorded_then_it_is_retryable(hik):
    # The retry will meet employeeNoAlreadyExist and go through Modify: no harm done.
    responses.post(USER_RECORD, json=ISAPI_OK)
    responses.post(CARD_RECORD, body=requests.ConnectionError())

    with pytest.raises(GatewayUnavailable):
        hik.apply(GRANT)


@responses.activate
def test_given_a_busy_device_then_the_terminal_is_unavailable(hik):
    responses.post(USER_RECORD, status=400, json=isapi_status(2, "deviceBusy", "Device Busy"))

    with pytest.raises(GatewayUnavailable):
        hik.apply(GRANT)


@responses.activate
def test_given_a_gate_without_a_door_number_then_nothing_is_sent(hik):
    with pytest.raises(GatewayRejected):
        hik.apply(replace(GRANT, gates=("north",)))

    assert len(responses.calls) == 0
