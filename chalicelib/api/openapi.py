"""The OpenAPI 3.1 document, generated from Chalice's route table and the declared route contracts.

Paths come from the routes Chalice really has (``app.routes``); bodies, parameters and responses
come from the :class:`~chalicelib.api.routing.RouteSpec` each view carries, and schemas from the
pydantic models themselves. A route registered without :meth:`Area.route` has no contract and is
left out, which the test suite reports as a failure.
"""

from __future__ import annotations

import re
from typing import Any

from chalice import Chalice
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chalicelib import __version__
from chalicelib.api.routing import RouteSpec, route_spec_of
from chalicelib.errors import (
    INTERNAL_ERROR,
    DomainError,
    MalformedJSON,
    UnsupportedMediaType,
    status_and_code,
)

REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{([^}+]+)\+?}")


class ErrorBody(BaseModel):
    """Every error response: a stable machine code and a human message."""

    code: str
    message: str
    fields: dict[str, str] | None = None
    request_id: str | None = None


def build_document(app: Chalice, *, local: bool = True) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document for every declared route of ``app``.

    Outside the ``local`` stage, local-only routes (the dev login) are left out: there they do
    not exist.
    """
    specs = [s for s in declared_specs(app) if local or s.policy.name != "local-only"]
    models: set[tuple[type[BaseModel], str]] = {(ErrorBody, "serialization")}
    for spec in specs:
        if spec.body is not None:
            models.add((spec.body, "validation"))
        if spec.response is not None:
            models.add((spec.response, "serialization"))
        models.update((model, "serialization") for _, _, model in spec.also)
    ordered = sorted(models, key=lambda item: (item[0].__name__, item[1]))
    refs, schema_doc = models_json_schema(ordered, ref_template=REF)

    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Campus service platform API",
            "version": __version__,
            "description": "Backend of the WeCom+ campus service hall. Errors are "
            '{"code", "message"}; validation errors add "fields".',
        },
        "paths": paths,
        "components": {
            "schemas": schema_doc.get("$defs", {}),
            "securitySchemes": {
                "session": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "The token from POST /auth/wecom (2 hours).",
                }
            },
            "headers": {
                "RequestId": {
                    "description": "The invocation's request id; quote it when reporting a problem.",
                    "schema": {"type": "string"},
                }
            },
        },
    }


def declared_specs(app: Chalice) -> list[RouteSpec]:
    """The contracts of every route Chalice has, in path order; undeclared routes are skipped."""
    specs = []
    for path in sorted(app.routes):
        for method, entry in sorted(app.routes[path].items()):
            spec = route_spec_of(entry.view_function)
            if spec is not None and spec.method == method and spec.path == path:
                specs.append(spec)
    return specs


def _operation(spec: RouteSpec, refs: dict[tuple[type[BaseModel], str], Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": spec.operation_id,
        "summary": spec.summary,
        "tags": [spec.area],
        "x-policy": spec.policy.name,
    }
    if spec.description:
        operation["description"] = spec.description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(spec.path)
    ]
    if spec.query is not None:
        schema = spec.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            parameters.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    if parameters:
        operation["parameters"] = parameters
    if spec.body is not None:
        content: dict[str, Any] = {"application/json": {"schema": refs[(spec.body, "validation")]}}
        for media_type in spec.content_types:
            if media_type != "application/json":
                content[media_type] = {"schema": {"type": "string"}}
        operation["requestBody"] = {"required": True, "content": content}
    if spec.policy.name.startswith("authenticated"):
        operation["security"] = [{"session": []}]

    responses: dict[str, Any] = {}
    if spec.response is not None:
        responses[str(spec.status)] = {
            "description": spec.summary,
            "content": {"application/json": {"schema": refs[(spec.response, "serialization")]}},
        }
    else:
        responses[str(spec.status)] = {"description": spec.summary}
    if spec.headers:
        responses[str(spec.status)]["headers"] = {name: {"schema": {"type": "string"}} for name in spec.headers}
    for status, when, model in spec.also:
        responses[str(status)] = {"description": when,
                                  "content": {"application/json": {"schema": refs[(model, "serialization")]}}}
    error_ref = refs[(ErrorBody, "serialization")]
    for error in _errors_of(spec):
        status, code = status_and_code(error())
        entry = responses.setdefault(
            str(status), {"description": "", "content": {"application/json": {"schema": error_ref}}}
        )
        entry["description"] = ", ".join(filter(None, [entry["description"], code]))
    responses["500"] = {
        "description": INTERNAL_ERROR[1],
        "content": {"application/json": {"schema": error_ref}},
    }
    for response in responses.values():
        response["headers"] = {**response.get("headers", {}), "X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
    operation["responses"] = responses
    return operation


def _errors_of(spec: RouteSpec) -> list[type[DomainError]]:
    """Declared errors plus those the routing layer itself may raise for this route."""
    errors: list[type[DomainError]] = list(spec.errors)
    # Chalice checks the Content-Type of every request that sends one, body or not.
    errors.append(UnsupportedMediaType)
    if spec.body is not None:
        errors += [MalformedJSON, spec.invalid]
    if spec.query is not None:
        errors.append(spec.invalid)
    errors += list(getattr(spec.policy, "errors", ()))
    seen: list[type[DomainError]] = []
    for error in errors:
        if error not in seen:
            seen.append(error)
    return seen
