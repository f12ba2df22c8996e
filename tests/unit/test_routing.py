"""The routing layer: body and query parsing, the error table, and Chalice's own errors reshaped.

Driven through a test-only app built with the same ``Area`` the real areas use.
"""

from __future__ import annotations

import io
import json

import pytest
from chalice import Chalice
from chalice.test import Client
from pydantic import BaseModel, ConfigDict, Field

from chalicelib.api import middleware
from chalicelib.api.routing import PUBLIC, Area
from chalicelib.errors import Conflict, NotFound


class NewRoom(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    seats: int = Field(ge=1, le=500)


class Room(BaseModel):
    room_id: str
    name: str
    seats: int


class Paging(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=200)


def build_app() -> tuple[Chalice, dict[str, Room]]:
    area = Area("rooms")
    rooms: dict[str, Room] = {}

    @area.route("/rooms", "POST", summary="Create a room", policy=PUBLIC, body=NewRoom, response=Room, status=201,
                errors=(Conflict,))
    def create_room(body: NewRoom) -> Room:
        if any(r.name == body.name for r in rooms.values()):
            raise Conflict("A room with this name exists.")
        room = Room(room_id=f"r{len(rooms) + 1}", **body.model_dump())
        rooms[room.room_id] = room
        return room

    @area.route("/rooms/{room_id}", "GET", summary="Read a room", policy=PUBLIC, response=Room, errors=(NotFound,))
    def get_room(room_id: str) -> Room:
        if room_id not in rooms:
            raise NotFound("No such room.")
        return rooms[room_id]

    @area.route("/rooms", "GET", summary="List rooms", policy=PUBLIC, query=Paging)
    def list_rooms(query: Paging) -> dict:
        return {"items": [r.model_dump() for r in list(rooms.values())[: query.limit]]}

    @area.route("/boom", "GET", summary="Always fails", policy=PUBLIC)
    def boom() -> None:
        raise RuntimeError("secret detail 370102199001011234")

    app = Chalice(app_name="routing-test")
    app.register_middleware(middleware.log_context, "all")
    app.register_blueprint(area.blueprint)
    return app, rooms


@pytest.fixture
def client():
    app, _ = build_app()
    with Client(app) as test_client:
        yield test_client


def post(client: Client, path: str, body: bytes | str, content_type: str = "application/json"):
    return client.http.post(path, body=body, headers={"Content-Type": content_type})


def test_given_a_valid_body_when_posting_then_the_view_gets_the_model_and_status_is_declared(client):
    response = post(client, "/rooms", json.dumps({"name": "会议室A", "seats": 12}))
    assert response.status_code == 201
    assert json.loads(response.body) == {"room_id": "r1", "name": "会议室A", "seats": 12}
    assert "会议室A".encode() in response.body  # UTF-8 on the wire, not \\u escapes


@pytest.mark.parametrize("raw", [b"{", b"not json", b"", b"   ", b'{"name": "x",}', b"\xff\xfe"])
def test_given_a_malformed_body_then_400_malformed_json(client, raw):
    response = post(client, "/rooms", raw)
    assert response.status_code == 400
    body = json.loads(response.body)
    assert body["code"] == "malformed_json"
    assert body["message"]


def test_given_an_unknown_field_then_422_names_it_and_nothing_is_created():
    app, rooms = build_app()
    with Client(app) as client:
        response = post(client, "/rooms", json.dumps({"name": "A", "seats": 3, "status": "approved"}))
    assert response.status_code == 422
    body = json.loads(response.body)
    assert body["code"] == "invalid"
    assert set(body["fields"]) == {"status"}
    assert rooms == {}


def test_given_wrong_types_then_each_bad_field_has_a_reason_and_no_input_is_echoed(client):
    response = post(client, "/rooms", json.dumps({"name": "", "seats": "13800138000"}))
    body = json.loads(response.body)
    assert response.status_code == 422
    assert set(body["fields"]) == {"name", "seats"}
    assert "13800138000" not in response.body.decode()


def test_given_json_that_is_not_an_object_then_422(client):
    response = post(client, "/rooms", b"[1, 2]")
    assert response.status_code == 422
    assert json.loads(response.body)["code"] == "invalid"


def test_given_a_domain_error_then_the_table_decides_status_and_code(client):
    post(client, "/rooms", json.dumps({"name": "A", "seats": 3}))
    duplicate = post(client, "/rooms", json.dumps({"name": "A", "seats": 4}))
    missing = client.http.get("/rooms/r404")
    assert (duplicate.status_code, json.loads(duplicate.body)["code"]) == (409, "conflict")
    assert (missing.status_code, json.loads(missing.body)) == (404, {"code": "not_found", "message": "No such room."})


def test_given_query_parameters_then_they_are_validated(client):
    for n in range(3):
        post(client, "/rooms", json.dumps({"name": f"R{n}", "seats": 3}))
    assert len(json.loads(client.http.get("/rooms?limit=2").body)["items"]) == 2
    bad = client.http.get("/rooms?limit=0")
    unknown = client.http.get("/rooms?status=x")
    assert (bad.status_code, list(json.loads(bad.body)["fields"])) == (422, ["limit"])
    assert (unknown.status_code, list(json.loads(unknown.body)["fields"])) == (422, ["status"])


def test_given_an_unexpected_exception_then_500_with_request_id_and_no_details(client):
    from chalicelib.observability import logger

    handler = logger.handlers[0]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        response = client.http.get("/boom")
    finally:
        handler.setStream(previous)
    logged = [json.loads(line) for line in buffer.getvalue().splitlines()]
    error = next(line for line in logged if line["message"] == "unhandled error in view")
    assert (error["error_type"], error["view"]) == ("RuntimeError", "boom")
    assert any("in boom" in frame for frame in error["stack"])
    assert "370102199001011234" not in buffer.getvalue()
    body = json.loads(response.body)
    assert response.status_code == 500
    assert body["code"] == "internal_error"
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert "Traceback" not in response.body.decode()
    assert "370102199001011234" not in response.body.decode()


def test_given_a_wrong_method_then_405_in_the_platform_shape(client):
    response = client.http.delete("/rooms")
    assert response.status_code == 405
    assert json.loads(response.body)["code"] == "method_not_allowed"


def test_given_a_non_json_content_type_then_415_in_the_platform_shape(client):
    response = post(client, "/rooms", "name=A", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert json.loads(response.body)["code"] == "unsupported_media_type"


def test_a_request_model_that_accepts_unknown_fields_cannot_be_declared():
    class Loose(BaseModel):
        name: str

    area = Area("loose")
    with pytest.raises(TypeError, match="extra='forbid'"):
        @area.route("/loose", "POST", summary="loose", policy=PUBLIC, body=Loose)
        def loose(body: Loose) -> None:
            return None


def test_chalice_errors_raised_in_a_view_keep_their_status_and_5xx_are_internal():
    from chalice import ChaliceViewError, ConflictError, UnprocessableEntityError

    area = Area("chalice-errors")

    @area.route("/conflict", "GET", summary="c", policy=PUBLIC)
    def conflict() -> None:
        raise ConflictError("db row 42 locked")

    @area.route("/unprocessable", "GET", summary="u", policy=PUBLIC)
    def unprocessable() -> None:
        raise UnprocessableEntityError("nope")

    @area.route("/server", "GET", summary="s", policy=PUBLIC)
    def server() -> None:
        raise ChaliceViewError("db password=hunter2")

    app = Chalice(app_name="chalice-errors")
    app.register_blueprint(area.blueprint)
    with Client(app) as client:
        answers = {path: client.http.get(path) for path in ("/conflict", "/unprocessable", "/server")}
    assert {p: (r.status_code, json.loads(r.body)["code"]) for p, r in answers.items()} == {
        "/conflict": (409, "conflict"), "/unprocessable": (422, "invalid"), "/server": (500, "internal_error")}
    assert all(b"hunter2" not in r.body and b"row 42" not in r.body for r in answers.values())


def test_every_response_carries_the_request_id(client):
    ok = client.http.get("/rooms")
    assert ok.status_code == 200
    assert len(ok.headers["X-Request-Id"]) >= 32
