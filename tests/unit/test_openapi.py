"""GET /openapi.json is generated from the code and covers every route Chalice has."""

from __future__ import annotations

import json

from chalice import Chalice
from chalice.test import Client
from openapi_spec_validator import validate
from pydantic import BaseModel, ConfigDict

from chalicelib.api import openapi
from chalicelib.api.routing import PUBLIC, Area, RequestModel
from tests.conftest import PROJECT_DIR


def chalice_operations(app: Chalice) -> set[tuple[str, str]]:
    return {(path, method.lower()) for path, methods in app.routes.items() for method in methods}


def documented_operations(document: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, methods in document["paths"].items() for method in methods}


def test_the_real_app_documents_every_route_and_the_document_is_valid_openapi_3_1():
    from app import app

    with Client(app, stage_name="local", project_dir=str(PROJECT_DIR)) as client:
        response = client.http.get("/openapi.json")
    document = json.loads(response.body)
    assert response.status_code == 200
    assert document["openapi"] == "3.1.0"
    validate(document)
    assert documented_operations(document) == chalice_operations(app)


def test_a_route_registered_without_a_contract_is_missing_from_the_document():
    # Given an app with one declared route and one bare Chalice route
    area = Area("demo")

    @area.route("/declared", "GET", summary="declared", policy=PUBLIC)
    def declared() -> dict:
        return {}

    app = Chalice(app_name="drift")
    app.register_blueprint(area.blueprint)

    @app.route("/bare")
    def bare() -> dict:
        return {}

    # When the document is built, then the bare route is what the coverage check reports
    missing = chalice_operations(app) - documented_operations(openapi.build_document(app))
    assert missing == {("/bare", "get")}


def test_bodies_parameters_and_errors_come_from_the_declarations():
    class Filing(BaseModel):
        model_config = ConfigDict(extra="forbid")
        note: str

    class Filed(BaseModel):
        filing_id: str

    class Page(RequestModel):
        limit: int = 50

    area = Area("filings")

    @area.route("/filings/{filing_id}", "PUT", summary="Replace", policy=PUBLIC, body=Filing, response=Filed)
    def replace(filing_id: str, body: Filing) -> Filed:
        return Filed(filing_id=filing_id)

    @area.route("/filings", "GET", summary="List", policy=PUBLIC, query=Page)
    def list_filings(query: Page) -> dict:
        return {}

    app = Chalice(app_name="filings")
    app.register_blueprint(area.blueprint)
    document = openapi.build_document(app)
    validate(document)

    put = document["paths"]["/filings/{filing_id}"]["put"]
    assert put["parameters"] == [{"name": "filing_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Filing"}
    assert document["components"]["schemas"]["Filing"]["additionalProperties"] is False
    assert {"200", "400", "415", "422", "500"} <= set(put["responses"])
    get = document["paths"]["/filings"]["get"]
    assert get["parameters"][0]["name"] == "limit" and get["parameters"][0]["in"] == "query"


def test_a_redirect_documents_its_location_and_the_other_answers_it_may_give():
    class Link(BaseModel):
        location: str

    area = Area("links")

    @area.route("/links/{link_id}/go", "GET", summary="Follow", policy=PUBLIC, status=302, headers=("Location",),
                also=((200, "as JSON when asked", Link),))
    def follow(link_id: str) -> dict:
        return {}

    app = Chalice(app_name="links")
    app.register_blueprint(area.blueprint)
    document = openapi.build_document(app)
    validate(document)
    responses = document["paths"]["/links/{link_id}/go"]["get"]["responses"]
    assert set(responses["302"]["headers"]) == {"Location", "X-Request-Id"} and "content" not in responses["302"]
    assert responses["200"]["description"] == "as JSON when asked"
    assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Link"}
    assert "location" in document["components"]["schemas"]["Link"]["properties"]
