"""Middleware registered by ``app.py`` for every event type.

* Binds the request id, the route (or the consumer/job name) and, once authentication has run,
  the user id to every log line of the invocation, and writes one access-log line per request.
* Rewrites the few errors Chalice produces itself before a view runs (405 method not allowed, 415
  unsupported media type, 500 for a malformed event) into the platform's error shape, so a client
  sees ``{"code", "message"}`` whichever layer refused it.
* Echoes the request id as ``X-Request-Id`` so a user's report can be matched to the logs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from chalice.app import CloudWatchEvent, Request, Response, SQSEvent

from chalicelib.api.routing import JSON_CONTENT_TYPE, request_id_of
from chalicelib.errors import GATEWAY_ERRORS, render_error, render_internal_error
from chalicelib.observability import logger


def log_context(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Bind invocation context to the logger for the duration of one event."""
    if isinstance(event, Request):
        return _http(event, get_response)
    if isinstance(event, (SQSEvent, CloudWatchEvent)):
        return _background(event, get_response)
    return get_response(event)


def _http(request: Request, get_response: Callable[[Request], Response]) -> Response:
    request_id = request_id_of(request)
    route = f"{request.method} {(request.context or {}).get('resourcePath', request.path)}"
    logger.thread_safe_append_keys(request_id=request_id, route=route)
    started = time.perf_counter()
    try:
        response = _normalise_platform_error(get_response(request), request_id)
        if request_id:
            response.headers["X-Request-Id"] = request_id
        logger.info(
            "request",
            extra={"status": response.status_code, "duration_ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return response
    finally:
        logger.thread_safe_clear_keys()


def _background(event: SQSEvent | CloudWatchEvent, get_response: Callable[[Any], Any]) -> Any:
    context = getattr(event, "context", None)
    keys = {
        "request_id": getattr(context, "aws_request_id", None),
        "function": getattr(context, "function_name", None),
    }
    if isinstance(event, CloudWatchEvent):
        keys["schedule"] = ",".join(event.resources or [])
    logger.thread_safe_append_keys(**{k: v for k, v in keys.items() if v})
    try:
        return get_response(event)
    finally:
        logger.thread_safe_clear_keys()


def _normalise_platform_error(response: Response, request_id: str | None) -> Response:
    """Chalice writes ``{"Code", "Message"}`` for errors raised outside any view; reshape them."""
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or set(body) != {"Code", "Message"}:
        return response
    if response.status_code >= 500:
        status, payload = render_internal_error(request_id)
    else:
        error_cls = GATEWAY_ERRORS.get(response.status_code)
        if error_cls is None:
            return response
        status, payload = render_error(error_cls())
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = JSON_CONTENT_TYPE
    return Response(body=json.dumps(payload, ensure_ascii=False), status_code=status, headers=headers)
