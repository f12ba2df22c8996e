"""Sessions: login, /me, and every way a token must stop working."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import time_machine
from chalice.test import Client

from app import app
from tests.conftest import PROJECT_DIR, stage_environment
from tests.support.identity import call, load_cast, login


@pytest.fixture(autouse=True)
def campus():
    load_cast()


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_dev_login_gives_a_two_hour_token_and_the_profile(client):
    status, body = call(client, "POST", "/auth/dev-login", body={"userid": "fdy01"})
    assert status == 200
    claims = claims_of(body["token"])
    assert (claims["sub"], claims["roles"], claims["ver"]) == ("fdy01", ["counselor"], 0)
    assert claims["exp"] - claims["iat"] == 7200
    assert body["user"]["userid"] == "fdy01" and body["user"]["counselor_of"] == ["cs2001", "cs2002"]


def test_me_returns_profile_roles_and_scopes(client):
    status, body = call(client, "GET", "/me", login(client, "fdy01"))
    assert status == 200
    assert body["roles"] == ["counselor"]
    assert body["scopes"] == ["self", "class:cs2001", "class:cs2002"]
    assert call(client, "GET", "/me", login(client, "dean01"))[1]["scopes"] == ["self", "department:cs"]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_dev_login_does_not_exist_in_deployed_stages(stage, monkeypatch):
    for name, value in stage_environment(stage).items():
        monkeypatch.setenv(name, value)
    with Client(app, stage_name=stage, project_dir=str(PROJECT_DIR)) as deployed:
        answers = [call(deployed, "POST", "/auth/dev-login", body=body) for body in
                   ({"userid": "admin"}, {"nonsense": 1}, "{not json")]
        document = json.loads(deployed.http.get("/openapi.json").body)
    assert [(status, body["code"]) for status, body in answers] == [(404, "not_found")] * 3
    assert "/auth/dev-login" not in document["paths"]


def test_unknown_and_left_people_cannot_log_in(client):
    assert call(client, "POST", "/auth/dev-login", body={"userid": "ghost"})[0] == 403
    admin = login(client, "admin")
    assert call(client, "PATCH", "/admin/people/s002", admin, {"status": "left"})[0] == 200
    assert call(client, "POST", "/auth/dev-login", body={"userid": "s002"})[0] == 403


def forge(token: str, **changes) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_tampered_wrong_key_none_alg_and_malformed_tokens_are_401(client):
    token = login(client, "s001")
    secret = stage_environment("local")["SESSION_SIGNING_KEY"]
    claims = claims_of(token)
    bad = {
        "raised roles": forge(token, roles=["it_admin"]),
        "other user": forge(token, sub="admin"),
        "flipped signature": token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "wrong key": jwt.encode(claims, "another-key-that-is-long-enough-0123456789", algorithm="HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "other stage": jwt.encode({**claims, "aud": "campus-platform:prod"}, secret, algorithm="HS256"),
        "garbage": "not.a.token",
    }
    for name, forged in bad.items():
        status, body = call(client, "GET", "/me", forged)
        assert (name, status, body["code"]) == (name, 401, "unauthorized")
    for header in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Basic {token}"}):
        response = client.http.get("/me", headers=header)
        assert response.status_code == 401 and json.loads(response.body)["code"] == "unauthorized"


def test_roles_in_a_validly_signed_token_grant_nothing(client):
    # Given a token correctly signed with the stage key but claiming roles the person lacks
    token = login(client, "s001")
    secret = stage_environment("local")["SESSION_SIGNING_KEY"]
    inflated = jwt.encode({**claims_of(token), "roles": ["it_admin", "hospital"]}, secret, algorithm="HS256")
    # Then the directory decides: admin routes refuse, /me shows the real roles
    assert call(client, "GET", "/admin/people/s002", inflated)[0] == 403
    assert call(client, "GET", "/me", inflated)[1]["roles"] == []
    assert call(client, "GET", "/people/s002", inflated)[0] == 404


def test_an_expired_token_is_401(client):
    token = login(client, "s001")
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(hours=2, seconds=1)):
        assert call(client, "GET", "/me", token)[0] == 401
    assert call(client, "GET", "/me", token)[0] == 200


def test_leaving_ends_the_session_at_the_next_request(client):
    student, admin = login(client, "s003"), login(client, "admin")
    assert call(client, "GET", "/me", student)[0] == 200
    call(client, "PATCH", "/admin/people/s003", admin, {"status": "left"})
    assert call(client, "GET", "/me", student)[0] == 401


def test_a_role_change_ends_old_sessions_and_the_new_token_carries_new_roles(client):
    teacher, admin = login(client, "t001"), login(client, "admin")
    status, body = call(client, "PATCH", "/admin/people/t001", admin,
                        {"roles": ["counselor"], "counselor_of": ["cs2001"]})
    assert status == 200 and body["token_version"] == 1
    assert call(client, "GET", "/me", teacher)[0] == 401
    assert call(client, "GET", "/me", login(client, "t001"))[1]["scopes"] == ["self", "class:cs2001"]
    assert call(client, "GET", "/people/s001", login(client, "t001"))[0] == 200


def test_roles_come_from_the_directory_not_from_the_client(client):
    status, body = call(client, "POST", "/auth/dev-login", body={"userid": "s001", "roles": ["it_admin"]})
    assert (status, body["fields"]) == (422, {"roles": "Extra inputs are not permitted"})
    admin = login(client, "admin")
    for field in ("token_version", "userid", "name", "updated_at"):
        status, body = call(client, "PATCH", "/admin/people/s001", admin, {field: "x"})
        assert (status, list(body["fields"])) == (422, [field])
