"""Declaring routes: one decorator that registers a Chalice route and records its contract.

Every HTTP route is declared through :meth:`Area.route`, which

* registers the view on the area's Chalice blueprint (one method per declaration);
* records a :class:`RouteSpec` on the view (policy, request and response models, errors), from
  which ``GET /openapi.json`` is generated, so the document cannot drift from the code;
* parses the JSON body and the query string into pydantic models (unknown fields rejected)
  before the view runs, and hands them to the view as ``body=`` and ``query=``;
* enforces the route's access policy before the view body runs;
* renders whatever the view raises through the one error table in :mod:`chalicelib.errors`.

Chalice turns exceptions raised in a view into its own ``{"Code", "Message"}`` bodies before any
middleware sees them, which is why the translation lives here, around the view, and not in a
middleware.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalice import Blueprint, ChaliceViewError, Response
from chalice.app import Request
from pydantic import BaseModel, ConfigDict, ValidationError

from chalicelib.domain.access import Actor
from chalicelib.errors import (
    GATEWAY_ERRORS,
    DomainError,
    Invalid,
    MalformedJSON,
    render_error,
    render_internal_error,
)
from chalicelib.observability import logger

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class RequestModel(BaseModel):
    """Base of request bodies and query strings: unknown fields are refused (no mass assignment)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Policy(Protocol):
    """Who may call a route. Checked before the view body runs."""

    name: str
    errors: tuple[type[DomainError], ...]  # what ``check`` may raise (documented per operation)

    def check(self, request: Request) -> Actor | None:
        """Return the caller (``None`` for anonymous); raise a :class:`DomainError` to refuse."""


@dataclass(frozen=True)
class Public:
    """Anyone may call the route: health checks, the API description, login."""

    name: str = "public"
    errors: tuple[type[DomainError], ...] = ()

    def check(self, request: Request) -> None:
        return None


PUBLIC = Public()


@dataclass(frozen=True)
class RouteSpec:
    """The contract of one route, as declared in code."""

    path: str
    method: str
    area: str
    summary: str
    policy: Policy
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[type[DomainError], ...] = ()
    description: str = ""
    operation_id: str = ""
    content_types: tuple[str, ...] = ("application/json",)
    max_body: int | None = None  # bytes; a bigger body is refused before it is parsed
    invalid: type[Invalid] = Invalid  # raised for a body or query that fails validation
    # Other successful answers the view may give: status -> (when, body model), documented as such
    also: tuple[tuple[int, str, type[BaseModel]], ...] = ()
    headers: tuple[str, ...] = ()  # response headers of the main status (``Location`` of a 302)


class Area:
    """One area of the API (health, entry, admin...): a Chalice blueprint plus route contracts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.blueprint = Blueprint(f"chalicelib.api.{name}")

    def route(
        self,
        path: str,
        method: str,
        *,
        summary: str,
        policy: Policy,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[type[DomainError], ...] = (),
        content_types: tuple[str, ...] = ("application/json",),
        max_body: int | None = None,
        invalid: type[Invalid] = Invalid,
        also: tuple[tuple[int, str, type[BaseModel]], ...] = (),
        headers: tuple[str, ...] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a route.

        The view receives path parameters, plus ``body``/``query`` when declared, ``actor`` (the
        caller the policy admitted) and ``request`` if its signature names them. A JSON body is
        parsed into ``body``; with another declared content type (CSV uploads) ``body`` is
        ``None`` and the view reads ``request.raw_body`` itself.

        The view returns a pydantic model (serialised in JSON mode), a plain JSON-able value,
        ``None`` (for 204), or a Chalice ``Response`` for anything else.

        ``max_body`` refuses a larger body with ``invalid`` (field ``body``) before parsing it;
        ``invalid`` is what a body or query failing validation raises (``Invalid``, 422, unless
        the route's contract says 400: ``InvalidInput``).

        ``also`` documents other successful answers as ``(status, when, model)``; ``headers``
        names the response headers of ``status`` (``Location`` for a redirect).
        """

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            for model in (body, query):
                if model is not None and model.model_config.get("extra") != "forbid":
                    # No mass assignment: a client must never set a field the model does not name.
                    raise TypeError(f"{view.__name__}: {model.__name__} must set extra='forbid'")
            spec = RouteSpec(
                path=path,
                method=method.upper(),
                area=self.name,
                summary=summary,
                policy=policy,
                body=body,
                query=query,
                response=response,
                status=status,
                errors=tuple(errors),
                description=(view.__doc__ or "").strip(),
                operation_id=view.__name__,
                content_types=tuple(content_types),
                max_body=max_body,
                invalid=invalid,
                also=tuple(also),
                headers=tuple(headers),
            )
            if invalid is not Invalid and invalid not in spec.errors:
                spec = dataclasses.replace(spec, errors=(*spec.errors, invalid))
            wants = set(inspect.signature(view).parameters)

            @functools.wraps(view)
            def endpoint(**path_params: str) -> Response:
                request = self.blueprint.current_request
                try:
                    actor = spec.policy.check(request)
                    kwargs: dict[str, Any] = dict(path_params)
                    if "actor" in wants:
                        kwargs["actor"] = actor
                    if "request" in wants:
                        kwargs["request"] = request
                    if spec.body is not None:
                        if spec.max_body is not None and len(request.raw_body or b"") > spec.max_body:
                            raise spec.invalid("The request body is too large.",
                                               {"body": f"at most {spec.max_body} bytes"})
                        kwargs["body"] = (parse_body(request, spec.body, spec.invalid) if _is_json(request)
                                          else None)
                    if spec.query is not None:
                        kwargs["query"] = parse_query(request, spec.query, spec.invalid)
                    return to_response(view(**kwargs), spec.status)
                except Exception as exc:  # every outcome goes through the one error table
                    return render_exception(exc, view.__name__, request)

            endpoint.route_spec = spec  # type: ignore[attr-defined]
            self.blueprint.route(path, methods=[spec.method], content_types=list(content_types))(endpoint)
            return endpoint

        return decorator


def render_exception(exc: Exception, view_name: str, request: Request | None) -> Response:
    """The response for anything a view raised.

    Domain errors render through the error table; Chalice's own 4xx errors (raised by its helpers)
    map by status to the same shapes, with our message rather than theirs; everything else is an
    internal error, logged without its message (it may carry personal data) and answered with the
    request id only.
    """
    if isinstance(exc, DomainError):
        try:
            return error_response(*render_error(exc))
        except LookupError:
            pass
    elif isinstance(exc, ChaliceViewError) and exc.STATUS_CODE in GATEWAY_ERRORS:
        return error_response(*render_error(GATEWAY_ERRORS[exc.STATUS_CODE]()))
    logger.error(
        "unhandled error in view",
        extra={"view": view_name, "error_type": type(exc).__name__, "stack": _frames(exc)},
    )
    return error_response(*render_internal_error(request_id_of(request)))


def _frames(exc: BaseException) -> list[str]:
    """Where an exception happened (file:line in function), without its message or locals."""
    return [f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno} in {frame.name}"
            for frame in traceback.extract_tb(exc.__traceback__)][-8:]


def parse_body(request: Request, model: type[BaseModel], invalid: type[Invalid] = Invalid) -> BaseModel:
    """Validate the request body as JSON against ``model``.

    Raises:
        MalformedJSON: the body is empty or not JSON.
        Invalid: the JSON does not fit the model; ``fields`` maps each bad field to the reason.
    """
    raw = request.raw_body or b""
    if not raw.strip():
        raise MalformedJSON("A JSON object body is required.")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise MalformedJSON() from None
        raise invalid_from(exc, invalid) from None


def _is_json(request: Request) -> bool:
    content_type = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
    return content_type == "application/json"


def parse_query(request: Request, model: type[BaseModel], invalid: type[Invalid] = Invalid) -> BaseModel:
    """Validate the query string against ``model`` (one value per parameter)."""
    params = dict(request.query_params or {})
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise invalid_from(exc, invalid) from None


def invalid_from(exc: ValidationError, invalid: type[Invalid] = Invalid) -> Invalid:
    """Turn pydantic's errors into ``Invalid`` with one reason per field (values are not echoed)."""
    fields: dict[str, str] = {}
    for err in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in err["loc"]) or "body"
        fields.setdefault(name, err["msg"])
    return invalid("The request failed validation.", fields)


def to_response(result: Any, status: int) -> Response:
    """Serialise a view's return value."""
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(body="", status_code=204 if status == 200 else status, headers={})
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json", by_alias=True)  # as /openapi.json documents it
    return json_response(result, status)


def json_response(payload: Any, status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response, UTF-8 and unescaped so Chinese text stays readable on the wire."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body=body, status_code=status, headers={"Content-Type": JSON_CONTENT_TYPE, **(headers or {})})


def error_response(status: int, body: Mapping[str, Any]) -> Response:
    return json_response(dict(body), status)


def request_id_of(request: Request | None) -> str | None:
    """The Lambda request id of the current invocation, when there is one."""
    if request is None:
        return None
    context = getattr(request, "lambda_context", None)
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        return str(request_id)
    return (request.context or {}).get("requestId")


def route_spec_of(view: Callable[..., Any]) -> RouteSpec | None:
    """The contract recorded on a view by :meth:`Area.route`, or ``None`` for a bare Chalice route."""
    return getattr(view, "route_spec", None)
