"""The service hall over HTTP: definitions, filing, chains, decisions, uploads, per-field errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from chalice.test import Client

from chalicelib.resources import QUEUES
from infra.local.aws import bucket_names, create_queues
from tests.support.hall import queued_notifications
from tests.support.identity import call, load_cast, login

LEAVE = {
    "id": "test-leave",
    "name": "测试请假",
    "category": "epidemic",
    "applicants": {"types": ["student"]},
    "fields": [
        {"name": "start", "label": "开始", "type": "datetime", "required": True},
        {"name": "end", "label": "结束", "type": "datetime", "required": True},
        {"name": "reason", "label": "事由", "type": "textarea", "required": True, "max_length": 100},
        {"name": "id_number", "label": "身份证号", "type": "idcard"},
        {"name": "mobile", "label": "手机", "type": "phone"},
        {"name": "nights", "label": "晚数", "type": "number", "integer": True, "min": 0, "max": 30},
        {"name": "proof", "label": "证明", "type": "attachment", "content_types": ["image/png", "application/pdf"]},
    ],
    "steps": [
        {"name": "辅导员审批", "approver": "counselor_of_applicant"},
        {"name": "学院审批", "approver": "dept_head_of_applicant", "when": "days(start, end) > 3"},
        {"name": "学工部审批", "approver": "role:student_affairs", "when": "days(start, end) > 7"},
    ],
    "cc": [{"on": ["approved"], "to": "role:hospital"}],
}
VALID_ID = "11010519491231002X"


@pytest.fixture
def hall(client: Client) -> Iterator[dict[str, str]]:
    """The demo cast, the queues, and the test service defined by the IT centre."""
    load_cast()
    create_queues(boto3.client("sqs"), QUEUES)
    tokens = {u: login(client, u) for u in ("admin", "s001", "s002", "s016", "fdy01", "fdy02", "dean01", "xg01",
                                             "doc01", "t001")}
    status, body = call(client, "PUT", "/admin/services/test-leave", tokens["admin"], LEAVE)
    assert status == 200, body
    yield tokens


def leave(days: float, **extra: Any) -> dict[str, Any]:
    start = "2026-12-01T08:00:00+08:00"
    from datetime import datetime, timedelta

    end = (datetime.fromisoformat(start) + timedelta(days=days)).isoformat()
    return {"data": {"start": start, "end": end, "reason": "回家", **extra}}


def test_chain_follows_the_day_thresholds_and_each_approver_in_turn(client: Client, hall: dict[str, str]) -> None:
    # Given a 9-day leave: counselor, then the department head, then student affairs
    status, app = call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(9))
    assert status == 201, app
    assert [s["authority"] for s in app["chain"]] == ["counselor:cs2001", "dept_head:cs", "role:student_affairs"]
    assert (app["status"], app["step"], app["waiting_for"]) == ("pending", 0, "counselor:cs2001")

    # When someone who is not the current approver tries, they are refused; the approvers go in turn
    status, body = call(client, "POST", f"/applications/{app['id']}/decisions", hall["dean01"],
                        {"decision": "approve"})
    assert status == 403, body
    for approver, step in (("fdy01", 1), ("dean01", 2)):
        status, app = call(client, "POST", f"/applications/{app['id']}/decisions", hall[approver],
                           {"decision": "approve", "comment": "同意"})
        assert (status, app["status"], app["step"]) == (200, "pending", step)
    status, app = call(client, "POST", f"/applications/{app['id']}/decisions", hall["xg01"],
                       {"decision": "approve"})

    # Then it is approved, with every transition recorded in order
    assert (status, app["status"], app["step"], app["version"]) == (200, "approved", None, 4)
    assert [(t["actor"], t["verb"], t["from_status"], t["to_status"]) for t in app["history"]] == [
        ("s001", "file", None, "pending"), ("fdy01", "approve", "pending", "pending"),
        ("dean01", "approve", "pending", "pending"), ("xg01", "approve", "pending", "approved")]
    # and the applicant, each next approver and the people copied in were told through the queue
    sent = {(n["key"].split(":")[-1], tuple(n["recipients"])) for n in queued_notifications()}
    assert ("approvers", ("fdy01",)) in sent and ("approvers", ("dean01",)) in sent
    assert ("approvers", ("xg01",)) in sent and ("applicant", ("s001",)) in sent and ("cc", ("doc01",)) in sent


@pytest.mark.parametrize(("days", "steps"), [(3, 1), (3 + 1 / 1440, 2), (7, 2), (7 + 1 / 1440, 3)])
def test_chain_length_at_the_day_boundaries(client: Client, hall: dict[str, str], days: float, steps: int) -> None:
    status, app = call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(days))
    assert status == 201 and len(app["chain"]) == steps


def test_approver_todo_lists_are_by_authority_oldest_first(client: Client, hall: dict[str, str]) -> None:
    # Given two applications from cs2001 and one from fl2001
    ids = [call(client, "POST", "/services/test-leave/applications", hall[u], leave(1))[1]["id"]
           for u in ("s001", "s002", "s016")]
    # When the counselors list their to-do (one item per page)
    status, page = call(client, "GET", "/approvals?limit=1", hall["fdy01"])
    assert status == 200 and [a["id"] for a in page["items"]] == ids[:1] and page["next"]
    status, page2 = call(client, "GET", f"/approvals?limit=1&next={page['next']}", hall["fdy01"])
    assert [a["id"] for a in page2["items"]] == ids[1:2] and page2["next"] is None
    # Then each sees only their classes; a decided application leaves the list
    assert [a["id"] for a in call(client, "GET", "/approvals", hall["fdy02"])[1]["items"]] == ids[2:]
    call(client, "POST", f"/applications/{ids[0]}/decisions", hall["fdy01"], {"decision": "reject"})
    assert [a["id"] for a in call(client, "GET", "/approvals", hall["fdy01"])[1]["items"]] == ids[1:2]


def test_return_edit_resubmit_withdraw_and_cancel(client: Client, hall: dict[str, str]) -> None:
    _, app = call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(1))
    # Given the counselor returns it for edits
    status, app = call(client, "POST", f"/applications/{app['id']}/decisions", hall["fdy01"],
                       {"decision": "return", "comment": "请补充证明"})
    assert (status, app["status"]) == (200, "returned")
    # When someone else tries to edit it, or the student edits it with a bad form, nothing changes
    assert call(client, "PUT", f"/applications/{app['id']}", hall["s002"], leave(2))[0] == 404
    assert call(client, "PUT", f"/applications/{app['id']}", hall["s001"], {"data": {}})[0] == 422
    # Then the student's edit starts the chain again at step 0
    status, app = call(client, "PUT", f"/applications/{app['id']}", hall["s001"], leave(5))
    assert (status, app["status"], app["step"], len(app["chain"])) == (200, "pending", 0, 2)
    # and an approved application can be cancelled, a pending one withdrawn, but not the other way round
    assert call(client, "POST", f"/applications/{app['id']}/cancel", hall["s001"])[0] == 409
    assert call(client, "POST", f"/applications/{app['id']}/withdraw", hall["s001"])[1]["status"] == "withdrawn"
    assert call(client, "POST", f"/applications/{app['id']}/decisions", hall["fdy01"],
                {"decision": "approve"})[0] == 409
    _, other = call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(1))
    call(client, "POST", f"/applications/{other['id']}/decisions", hall["fdy01"], {"decision": "approve"})
    assert call(client, "POST", f"/applications/{other['id']}/withdraw", hall["s001"])[0] == 409
    assert call(client, "POST", f"/applications/{other['id']}/cancel", hall["s001"])[1]["status"] == "cancelled"


def test_applications_are_visible_to_the_applicant_and_the_chain_only(client: Client, hall: dict[str, str]) -> None:
    _, app = call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(1))
    for userid, expected in (("s001", 200), ("fdy01", 200), ("s002", 404), ("fdy02", 404), ("t001", 404),
                             ("admin", 404), ("doc01", 200)):
        assert call(client, "GET", f"/applications/{app['id']}", hall[userid])[0] == expected, userid
    # The applicant lists their own; others' lists do not show it
    assert [a["id"] for a in call(client, "GET", "/applications", hall["s001"])[1]["items"]] == [app["id"]]
    assert call(client, "GET", "/applications", hall["s002"])[1]["items"] == []


def test_invalid_forms_name_every_bad_field_and_write_nothing(client: Client, hall: dict[str, str]) -> None:
    # Given a form with a missing field, a wrong type, a bad ID number, a bad mobile and an unknown field
    body = {"data": {"start": "2026-12-01T08:00:00+08:00", "end": "tomorrow", "id_number": "110105194912310021",
                     "mobile": "12345", "nights": 1.5, "colour": "red"}}
    status, error = call(client, "POST", "/services/test-leave/applications", hall["s001"], body)
    # Then 422 with a reason per field, and no application exists
    assert status == 422, error
    assert set(error["fields"]) == {"data.end", "data.reason", "data.id_number", "data.mobile", "data.nights",
                                    "data.colour"}
    assert error["fields"]["data.reason"] == "required"
    assert "110105" not in json.dumps(error)  # the value is never echoed
    assert call(client, "GET", "/applications", hall["s001"])[1]["items"] == []
    # and a body that is not an object of fields is a 422 too, a broken one a 400
    assert call(client, "POST", "/services/test-leave/applications", hall["s001"], {"data": []})[0] == 422
    assert call(client, "POST", "/services/test-leave/applications", hall["s001"], "{")[0] == 400


def test_id_numbers_are_stored_sealed_and_shown_masked(client: Client, hall: dict[str, str]) -> None:
    status, app = call(client, "POST", "/services/test-leave/applications", hall["s001"],
                       leave(1, id_number=VALID_ID.lower(), mobile="+86 138-0013-8000"))
    assert status == 201
    assert app["data"]["id_number"] == "110105********002X" and app["data"]["mobile"] == "13800138000"
    from chalicelib.db.hall import ApplicationModel

    stored = ApplicationModel.get(app["id"]).record
    assert VALID_ID not in stored and "sealed" in stored


def test_uploads_are_presigned_and_checked_before_a_form_may_use_them(client: Client, hall: dict[str, str]) -> None:
    s3 = boto3.client("s3")
    # Given a slot for a 1 KB PDF
    status, slot = call(client, "POST", "/uploads", hall["s001"], {"content_type": "application/pdf", "size": 1024})
    assert status == 201 and slot["key"].startswith("uploads/") and "Signature" in slot["url"]
    # When the form references it before the upload, it is refused
    status, error = call(client, "POST", "/services/test-leave/applications", hall["s001"],
                         leave(1, proof=[slot["key"]]))
    assert (status, error["fields"]) == (422, {"data.proof": "the file has not been uploaded"})
    # and a file larger than the slot allows is refused too
    s3.put_object(Bucket=bucket_names()[0], Key=slot["key"], Body=b"x" * 4096, ContentType="application/pdf")
    status, error = call(client, "POST", "/services/test-leave/applications", hall["s001"],
                         leave(1, proof=[slot["key"]]))
    assert status == 422 and error["fields"]["data.proof"].startswith("file too large")
    # Then the right file is accepted, by its owner only
    s3.put_object(Bucket=bucket_names()[0], Key=slot["key"], Body=b"x" * 1024, ContentType="application/pdf")
    status, error = call(client, "POST", "/services/test-leave/applications", hall["s002"],
                         leave(1, proof=[slot["key"]]))
    assert (status, error["fields"]) == (422, {"data.proof": "unknown upload"})
    status, app = call(client, "POST", "/services/test-leave/applications", hall["s001"],
                       leave(1, proof=[slot["key"]]))
    assert status == 201 and app["data"]["proof"] == [slot["key"]]


def tags_of(key: str) -> dict[str, str]:
    tagging = boto3.client("s3").get_object_tagging(Bucket=bucket_names()[0], Key=key)
    return {t["Key"]: t["Value"] for t in tagging["TagSet"]}


def test_uploads_stay_pending_until_a_stored_form_holds_them(client: Client, hall: dict[str, str]) -> None:
    # Given two files uploaded through their presigned URLs, with the headers the slots name
    slots = [call(client, "POST", "/uploads", hall["s001"], {"content_type": "application/pdf", "size": 5})[1]
             for _ in range(2)]
    for slot in slots:
        assert slot["headers"] == {"Content-Type": "application/pdf", "x-amz-tagging": "upload=pending",
                                   "If-None-Match": "*"}
        signed = parse_qs(urlsplit(slot["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
        assert {"content-type", "content-length", "x-amz-tagging", "if-none-match"} <= set(signed)
        assert requests.put(slot["url"], data=b"%PDF!", headers=slot["headers"], timeout=10).status_code == 200
    # Then both arrive pending (what the bucket's lifecycle deletes after a few days)
    assert [tags_of(s["key"]) for s in slots] == [{"upload": "pending"}] * 2
    # When a form holding the first is stored, that file is kept and the other stays pending
    status, app = call(client, "POST", "/services/test-leave/applications", hall["s001"],
                       leave(1, proof=[slots[0]["key"]]))
    assert status == 201
    assert [tags_of(s["key"]) for s in slots] == [{"upload": "kept"}, {"upload": "pending"}]
    # And the URL cannot put the file again (that would swap a filed document and make it pending)
    again = requests.put(slots[0]["url"], data=b"%PDF?", headers=slots[0]["headers"], timeout=10)
    assert again.status_code == 412 and tags_of(slots[0]["key"]) == {"upload": "kept"}
    # When a refused edit names the second file (the form is not returned: 409), it stays pending
    status, _ = call(client, "PUT", f"/applications/{app['id']}", hall["s001"], leave(1, proof=[slots[1]["key"]]))
    assert status == 409 and tags_of(slots[1]["key"]) == {"upload": "pending"}
    # And once the form is returned and resent with it instead, it is kept (the first file too:
    # keys are not unique to one form, so a file dropped from this one is not set back to pending)
    call(client, "POST", f"/applications/{app['id']}/decisions", hall["fdy01"], {"decision": "return"})
    status, _ = call(client, "PUT", f"/applications/{app['id']}", hall["s001"], leave(1, proof=[slots[1]["key"]]))
    assert status == 200 and [tags_of(s["key"]) for s in slots] == [{"upload": "kept"}] * 2


def test_a_form_whose_files_cannot_be_kept_is_not_stored(client: Client, hall: dict[str, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    from chalicelib.integrations import storage

    _, slot = call(client, "POST", "/uploads", hall["s001"], {"content_type": "application/pdf", "size": 5})
    requests.put(slot["url"], data=b"%PDF!", headers=slot["headers"], timeout=10)

    real = storage.s3_client()

    class SlowDown:
        """The bucket's client, throttled on tagging."""

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def put_object_tagging(self, **params: object) -> None:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
                              "PutObjectTagging")

    with monkeypatch.context() as storage_down:
        # Given the storage refusing to tag the file
        storage_down.setattr(storage, "s3_client", SlowDown)
        # When the student files the form, they are told to try again, and nothing was filed
        status, error = call(client, "POST", "/services/test-leave/applications", hall["s001"],
                             leave(1, proof=[slot["key"]]))
        assert (status, error["code"]) == (503, "upstream_unavailable")
        assert call(client, "GET", "/applications", hall["s001"])[1]["items"] == []
        assert tags_of(slot["key"]) == {"upload": "pending"}
    # And once the storage answers again, the same form goes through
    assert call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(1, proof=[slot["key"]]))[0] == 201
    assert tags_of(slot["key"]) == {"upload": "kept"}


@pytest.mark.parametrize(("body", "field"), [
    ({"content_type": "application/x-msdownload", "size": 10}, "content_type"),
    ({"content_type": "image/png", "size": 11 * 1024 * 1024}, "size"),
    ({"content_type": "image/png", "size": 0}, "size"),
])
def test_upload_limits(client: Client, hall: dict[str, str], body: dict[str, Any], field: str) -> None:
    status, error = call(client, "POST", "/uploads", hall["s001"], body)
    assert status == 422 and field in error["fields"]


def test_definitions_are_versioned_and_applications_keep_theirs(client: Client, hall: dict[str, str]) -> None:
    # Given an application filed under version 1
    _, first = call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(1))
    assert first["service_version"] == 1
    # When the IT centre makes the reason optional and drops the counselor step (version 2)
    changed = {**LEAVE, "fields": [{**f, "required": False} if f["name"] == "reason" else f for f in LEAVE["fields"]],
               "steps": [{"name": "学工部审批", "approver": "role:student_affairs"}]}
    status, service = call(client, "PUT", "/admin/services/test-leave", hall["admin"], changed)
    assert (status, service["version"]) == (200, 2)
    # Then new applications use version 2 and the old one still waits for its counselor
    _, second = call(client, "POST", "/services/test-leave/applications", hall["s001"],
                     {"data": {"start": "2026-12-01T08:00:00+08:00", "end": "2026-12-02T08:00:00+08:00"}})
    assert (second["service_version"], second["waiting_for"]) == (2, "role:student_affairs")
    status, first = call(client, "POST", f"/applications/{first['id']}/decisions", hall["fdy01"],
                         {"decision": "approve"})
    assert (status, first["status"]) == (200, "approved")
    # and only the IT centre may change definitions; a bad definition is refused with reasons
    assert call(client, "PUT", "/admin/services/test-leave", hall["fdy01"], changed)[0] == 403
    broken = {**LEAVE, "steps": [{"name": "x", "approver": "role:janitor"}]}
    status, error = call(client, "PUT", "/admin/services/test-leave", hall["admin"], broken)
    assert status == 422 and error["fields"]
    assert call(client, "PUT", "/admin/services/other-id", hall["admin"], LEAVE)[0] == 422


def test_services_are_listed_for_their_audience(client: Client, hall: dict[str, str]) -> None:
    status, listing = call(client, "GET", "/services?category=epidemic&q=测试", hall["s001"])
    assert status == 200 and [s["id"] for s in listing["items"]] == ["test-leave"]
    assert "test-leave" not in [s["id"] for s in call(client, "GET", "/services", hall["t001"])[1]["items"]]
    assert call(client, "GET", "/services/test-leave", hall["t001"])[0] == 404
    assert call(client, "POST", "/services/test-leave/applications", hall["t001"], leave(1))[0] == 404
    status, form = call(client, "GET", "/services/test-leave", hall["s001"])
    assert status == 200 and [f["name"] for f in form["fields"]][:3] == ["start", "end", "reason"]


def test_a_step_nobody_can_decide_refuses_the_filing(client: Client, hall: dict[str, str]) -> None:
    # Given fl has no department head: a long leave from fl2001 cannot be routed
    status, error = call(client, "POST", "/services/test-leave/applications", hall["s016"], leave(5))
    assert status == 422 and error["fields"] == {"steps.1": "no approver"}
    assert call(client, "GET", "/applications", hall["s016"])[1]["items"] == []


def test_statistics_count_by_status_time_to_decision_and_backlog(client: Client, hall: dict[str, str]) -> None:
    # Given four applications: one approved, one rejected, two waiting for counselors
    ids = [call(client, "POST", "/services/test-leave/applications", hall[u], leave(1))[1]["id"]
           for u in ("s001", "s002", "s001", "s016")]
    call(client, "POST", f"/applications/{ids[0]}/decisions", hall["fdy01"], {"decision": "approve"})
    call(client, "POST", f"/applications/{ids[1]}/decisions", hall["fdy01"], {"decision": "reject"})
    # When a leader asks for today's figures
    from datetime import datetime, timedelta, timezone

    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    leader = login(client, "leader01")
    status, stats = call(client, "GET", f"/statistics/services/test-leave?from={today}&to={today}", leader)
    # Then the counts, the median and the backlog per approver are right, with no personal data
    assert status == 200, stats
    assert stats["filed"] == 4 and stats["by_status"] == {"approved": 1, "pending": 2, "rejected": 1}
    assert stats["median_handling_hours"] is not None and stats["median_handling_hours"] < 1
    assert [(b["authority"], b["open"]) for b in stats["backlog"]] == [("counselor:cs2001", 1),
                                                                      ("counselor:fl2001", 1)]
    assert "s001" not in json.dumps(stats)
    # and a period before any filing is empty; students may not ask; a backwards period is refused
    status, empty = call(client, "GET", "/statistics/services/test-leave?from=2020-01-01&to=2020-01-31", leader)
    assert (status, empty["filed"], empty["backlog"]) == (200, 0, [])
    assert call(client, "GET", f"/statistics/services/test-leave?from={today}&to={today}", hall["s001"])[0] == 403
    assert call(client, "GET", f"/statistics/services/test-leave?from={today}&to=2020-01-01", leader)[0] == 422


def test_a_retried_submission_with_the_same_idempotency_key_files_once(client: Client, hall: dict[str, str]) -> None:
    headers = {"Idempotency-Key": "form-7f3a"}
    # Given a submission, and its retry after a lost response
    first = client.http.post("/services/test-leave/applications", body=json.dumps(leave(1)),
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {hall['s001']}",
                                      **headers})
    again = client.http.post("/services/test-leave/applications", body=json.dumps(leave(1)),
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {hall['s001']}",
                                      **headers})
    # Then one application exists and the retry answers with it, marked as replayed
    assert (first.status_code, again.status_code) == (201, 201)
    assert json.loads(first.body)["id"] == json.loads(again.body)["id"]
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert len(call(client, "GET", "/applications", hall["s001"])[1]["items"]) == 1
    # and a refused form releases its key, so the corrected retry files
    bad = call(client, "POST", "/services/test-leave/applications", hall["s002"], {"data": {}}, headers)
    good = call(client, "POST", "/services/test-leave/applications", hall["s002"], leave(1), headers)
    assert (bad[0], good[0]) == (422, 201)
    assert call(client, "POST", "/services/test-leave/applications", hall["s002"], leave(1),
                {"Idempotency-Key": "no spaces"})[0] == 422


def test_forms_refuse_blank_required_text_odd_values_and_reversed_periods(client: Client, hall: dict[str, str]) -> None:
    # Given a blank reason, a select-like value of the wrong shape, a huge number and an end before the start
    body = {"data": {"start": "2026-12-05T08:00:00+08:00", "end": "2026-12-01T08:00:00+08:00", "reason": "   ",
                     "nights": 10 ** 400}}
    status, error = call(client, "POST", "/services/test-leave/applications", hall["s001"], body)
    # Then each is named, and nothing is filed (a reversed period would otherwise skip approval steps)
    assert status == 422, error
    assert error["fields"] == {"data.reason": "required", "data.nights": "must be between -1e+15 and 1e+15",
                               "data.end": "must not be before start"}
    assert call(client, "GET", "/applications", hall["s001"])[1]["items"] == []


def test_lists_carry_no_form_data(client: Client, hall: dict[str, str]) -> None:
    call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(1, mobile="13800138000"))
    for token, path in ((hall["s001"], "/applications"), (hall["fdy01"], "/approvals")):
        items = call(client, "GET", path, token)[1]["items"]
        assert len(items) == 1 and "data" not in items[0] and "13800138000" not in json.dumps(items)
        assert items[0]["step_name"] == "辅导员审批"


def test_a_returned_form_keeps_its_files_after_their_upload_slots_expire(client: Client, hall: dict[str, str]) -> None:
    s3 = boto3.client("s3")
    _, slot = call(client, "POST", "/uploads", hall["s001"], {"content_type": "application/pdf", "size": 8})
    s3.put_object(Bucket=bucket_names()[0], Key=slot["key"], Body=b"x" * 8, ContentType="application/pdf")
    _, app = call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(1, proof=[slot["key"]]))
    call(client, "POST", f"/applications/{app['id']}/decisions", hall["fdy01"], {"decision": "return"})
    # Given the slot is gone (TTL) when the student edits the returned form
    from chalicelib.db.hall import UploadModel

    UploadModel(slot["key"]).delete()
    # When they resend it with the same file, it is accepted; a new unknown key is not
    status, resent = call(client, "PUT", f"/applications/{app['id']}", hall["s001"], leave(2, proof=[slot["key"]]))
    assert (status, resent["data"]["proof"]) == (200, [slot["key"]])


def test_services_filed_at_their_own_endpoint_refuse_a_plain_application(client: Client, hall: dict[str, str]) -> None:
    status, error = call(client, "POST", "/services/counselling/applications", hall["s001"],
                         {"data": {"topic": "x"}})
    assert status == 409 and "/counselling/slots" in error["message"]
    assert call(client, "GET", "/services/counselling", hall["s001"])[1]["filed_at"].startswith("POST /counselling")


def test_attachments_are_downloaded_through_short_links_by_those_who_may_read_the_form(
        client: Client, hall: dict[str, str]) -> None:
    _, slot = call(client, "POST", "/uploads", hall["s001"], {"content_type": "application/pdf", "size": 5})
    boto3.client("s3").put_object(Bucket=bucket_names()[0], Key=slot["key"], Body=b"%PDF!", ContentType="application/pdf")
    _, app = call(client, "POST", "/services/test-leave/applications", hall["s001"], leave(1, proof=[slot["key"]]))
    # When the counselor asks for the file, they get a presigned link to exactly that object
    status, link = call(client, "GET", f"/applications/{app['id']}/files?key={slot['key']}", hall["fdy01"])
    assert status == 200 and slot["key"] in link["url"] and "Signature" in link["url"]
    # Then someone outside the chain, or a key not on the form, gets nothing
    assert call(client, "GET", f"/applications/{app['id']}/files?key={slot['key']}", hall["s002"])[0] == 404
    other = "uploads/20261201/" + "0" * 32 + ".pdf"
    assert call(client, "GET", f"/applications/{app['id']}/files?key={other}", hall["fdy01"])[0] == 404
