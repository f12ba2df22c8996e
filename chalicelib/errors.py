"""Domain exceptions and the one table that maps them to HTTP responses.

Domain code raises these; it never builds HTTP responses and never imports Chalice. The API layer
(:mod:`chalicelib.api.routing`) renders any of them through :func:`render_error`, so an error looks
the same on every route: ``{"code": "...", "message": "..."}``, plus ``"fields"`` for validation.
Callers match on the exception class or on ``code``, never on message text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """Base of every error a client is allowed to see."""

    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message


class BadRequest(DomainError):
    default_message = "The request is malformed."


class MalformedJSON(BadRequest):
    default_message = "The body is not valid JSON."


class Invalid(DomainError):
    """The request was understood but its content breaks a rule; ``fields`` names the culprits."""

    default_message = "The request failed validation."

    def __init__(self, message: str | None = None, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = dict(fields or {})


class InvalidInput(Invalid):
    """Like :class:`Invalid`, answered 400: for forms whose contract says bad input is a 400
    (the daily health report), with the same per-field reasons."""


class Unauthorized(DomainError):
    default_message = "Authentication is required."


class Forbidden(DomainError):
    default_message = "You are not allowed to do this."


class ConsentRequired(Forbidden):
    """A separate consent the person has not given (or withdrew) is needed first."""

    default_message = "Give your consent first."


class NotFound(DomainError):
    default_message = "No such resource."


class Conflict(DomainError):
    default_message = "The resource changed or already exists."


class RateLimited(DomainError):
    default_message = "Too many requests; try again later."


class UpstreamUnavailable(DomainError):
    default_message = "A campus system this needs is not answering; try again shortly."


class UnsupportedMediaType(DomainError):
    default_message = "Send the body as application/json."


class MethodNotAllowed(DomainError):
    default_message = "This method is not allowed on this resource."


# The single table: exception class -> (HTTP status, stable error code). Subclasses inherit their
# parent's entry unless they add their own.
ERROR_TABLE: dict[type[DomainError], tuple[int, str]] = {
    BadRequest: (400, "bad_request"),
    MalformedJSON: (400, "malformed_json"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    NotFound: (404, "not_found"),
    MethodNotAllowed: (405, "method_not_allowed"),
    Conflict: (409, "conflict"),
    UnsupportedMediaType: (415, "unsupported_media_type"),
    Invalid: (422, "invalid"),
    InvalidInput: (400, "invalid_input"),
    ConsentRequired: (403, "consent_required"),
    RateLimited: (429, "rate_limited"),
    UpstreamUnavailable: (503, "upstream_unavailable"),
}

INTERNAL_ERROR = (500, "internal_error", "An unexpected error occurred; quote the request id when reporting it.")

# Errors raised by the platform before our code runs (API Gateway, or Chalice's own routing and
# helpers), keyed by HTTP status. The local server renders them, and the AWS template's gateway
# responses must render the same bodies, so clients see one error shape everywhere. A status not
# listed here (and every 5xx) is rendered as an internal error.
GATEWAY_ERRORS: dict[int, type[DomainError]] = {}
for _cls, (_status, _) in ERROR_TABLE.items():  # the first (most general) class of each status
    if _cls is not MalformedJSON and _status < 500:
        GATEWAY_ERRORS.setdefault(_status, _cls)


def status_and_code(exc: DomainError) -> tuple[int, str]:
    """Look an exception up in :data:`ERROR_TABLE`, walking its class hierarchy.

    Raises:
        LookupError: the class has no entry (a bare ``DomainError``): a bug, rendered as a 500.
    """
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]  # type: ignore[index]
    raise LookupError(f"{type(exc).__name__} has no entry in ERROR_TABLE")


def render_error(exc: DomainError) -> tuple[int, dict[str, Any]]:
    """Return ``(status, body)`` for a domain error."""
    status, code = status_and_code(exc)
    body: dict[str, Any] = {"code": code, "message": exc.message}
    if isinstance(exc, Invalid) and exc.fields:
        body["fields"] = exc.fields
    return status, body


def render_internal_error(request_id: str | None) -> tuple[int, dict[str, Any]]:
    """Return ``(status, body)`` for an unexpected failure: a request id, never a traceback."""
    status, code, message = INTERNAL_ERROR
    return status, {"code": code, "message": message, "request_id": request_id or "unknown"}
