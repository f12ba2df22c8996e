"""Service endpoints: liveness and the API description."""

from __future__ import annotations

import weakref
from typing import Any

from chalice import Chalice
from pydantic import BaseModel

from chalicelib.api import openapi
from chalicelib.api.routing import PUBLIC, Area
from chalicelib.settings import get_settings

area = Area("system")


class Health(BaseModel):
    status: str
    stage: str
    version: str


@area.route("/healthz", "GET", summary="Liveness: the stage and version serving", policy=PUBLIC, response=Health)
def get_health() -> Health:
    """Answers without touching any dependency, so a load balancer can poll it cheaply."""
    settings = get_settings()
    return Health(status="ok", stage=settings.stage, version=settings.app_version)


@area.route("/openapi.json", "GET", summary="The OpenAPI 3.1 description of this API", policy=PUBLIC)
def get_openapi() -> dict[str, Any]:
    """Generated from the routes the app really has, so it cannot drift from the code."""
    return _document()


def _document() -> dict[str, Any]:
    # Built once per app and stage kind: the route table is fixed after import.
    app = area.blueprint.current_app
    local = get_settings().is_local
    documents = _documents.setdefault(app, {})
    if local not in documents:
        documents[local] = openapi.build_document(app, local=local)
    return documents[local]


_documents: weakref.WeakKeyDictionary[Chalice, dict[bool, dict[str, Any]]] = weakref.WeakKeyDictionary()
