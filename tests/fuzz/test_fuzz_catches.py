"""The fuzz layer itself: run the same checks on a small app with a deliberate 500 and a route
that answers without the session its contract requires; both must fail (a test of the test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from chalice import Chalice
from chalice.test import Client
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup

from chalicelib.api import middleware, openapi
from chalicelib.api.routing import PUBLIC, Area
from tests.fuzz.conftest import BASE_URL, ChaliceAdapter


def probe_app() -> Chalice:
    area = Area("probe")

    @area.route("/probe/broken/{item_id}", "GET", summary="A view with a bug", policy=PUBLIC)
    def broken(item_id: str) -> dict[str, Any]:
        return {"length": 1 // (len(item_id) - len(item_id))}  # ZeroDivisionError: a 500

    @area.route("/probe/unguarded", "GET", summary="Meant for signed-in people", policy=PUBLIC)
    def unguarded() -> dict[str, Any]:
        return {"secret": "anyone gets this"}

    @area.route("/probe/fine/{item_id}", "GET", summary="A sound view", policy=PUBLIC)
    def fine(item_id: str) -> dict[str, Any]:
        return {"item": item_id}

    app = Chalice(app_name="fuzz-probe")
    app.register_middleware(middleware.log_context, "all")
    app.register_blueprint(area.blueprint)
    return app


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[requests.Session, dict[str, Any]]]:
    app = probe_app()
    document = openapi.build_document(app)
    # The contract says a session is required; the view does not check one (the bug to catch).
    document["paths"]["/probe/unguarded"]["get"]["security"] = [{"session": []}]
    with Client(app) as client:
        adapter = ChaliceAdapter(client)
        monkeypatch.setattr(requests.Session, "get_adapter", lambda self, url: adapter)
        yield requests.Session(), document


def fuzz(session: requests.Session, document: dict[str, Any], path: str) -> None:
    operation = schemathesis.openapi.from_dict(document)[path]["GET"]

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(max_examples=10, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=BASE_URL, session=session, headers={"Authorization": "Bearer probe"},
                               excluded_checks=[positive_data_acceptance])

    run()


def test_a_server_error_fails_the_fuzz_layer(session: tuple[requests.Session, dict[str, Any]]) -> None:
    with pytest.raises(FailureGroup, match="Server error"):
        fuzz(*session, "/probe/broken/{item_id}")


def test_a_route_answering_without_its_session_fails_the_fuzz_layer(
        session: tuple[requests.Session, dict[str, Any]]) -> None:
    with pytest.raises(FailureGroup, match="without authentication"):
        fuzz(*session, "/probe/unguarded")


def test_a_sound_route_passes_it(session: tuple[requests.Session, dict[str, Any]]) -> None:
    fuzz(*session, "/probe/fine/{item_id}")
