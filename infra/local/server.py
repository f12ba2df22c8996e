"""The API on loopback: Chalice's local server, with API Gateway's own errors in our shape.

API Gateway refuses a path no route matches with a 403 ``Missing Authentication Token`` before
the app runs. The deployment template maps those gateway responses to the platform's error
bodies (an unknown route is a 404 ``not_found``); this server does the same, so clients see one
error shape locally and in AWS.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from chalice import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    ForbiddenError,
    LocalDevServer,
    LocalGatewayException,
    create_local_server,
)

from chalicelib.errors import GATEWAY_ERRORS, BadRequest, MethodNotAllowed, NotFound, render_error


class RequestHandler(ChaliceRequestHandler):
    """Renders gateway-level refusals (unknown route) as ``{"code", "message"}``."""

    # Chalice writes headers and body separately: with Nagle's algorithm on, a kept-alive client
    # waits ~40 ms for every response's second segment.
    disable_nagle_algorithm = True

    def _send_error_response(self, error: LocalGatewayException) -> None:
        # The app declares no Chalice authorizers, so a gateway 403 always means "no such route"
        # (Chalice local words it differently when an Authorization header is present).
        if isinstance(error, ForbiddenError):
            status, body = render_error(NotFound(f"No route matches {self.command} {self.path.split('?')[0]}."))
            headers = dict(error.headers or {})
            headers.pop("x-amzn-ErrorType", None)
            headers["X-Request-Id"] = headers.pop("x-amzn-RequestId", "")
            headers["Content-Type"] = "application/json; charset=utf-8"
            self._send_http_response(status, headers, json.dumps(body, ensure_ascii=False).encode("utf-8"))
            return
        super()._send_error_response(error)

    def _refuse_method(self) -> None:
        # Chalice's handler knows GET..OPTIONS; anything else (TRACE, CONNECT, made-up verbs) would
        # get the stdlib's HTML 501. API Gateway refuses them; answer as the platform does.
        self._parse_payload()  # read the body off the connection, or the next request starts inside it
        headers = {"Content-Type": "application/json; charset=utf-8"}
        try:
            route = self.local_gateway.event_converter._route_matcher.match_route(self.path)  # noqa: SLF001
            headers["Allow"] = ", ".join(sorted(self.local_gateway._app_object.routes[route.route]))  # noqa: SLF001
        except ValueError:
            pass
        status, body = render_error(MethodNotAllowed(f"{self.command} is not supported."))
        self._send_http_response(status, headers, json.dumps(body, ensure_ascii=False).encode("utf-8"))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The stdlib answers unparseable requests (bad request line, oversized headers) in HTML.
        error_cls = GATEWAY_ERRORS.get(code, BadRequest)
        status, body = render_error(error_cls())  # the stdlib's message may echo the raw request
        self.close_connection = True
        try:
            self._send_http_response(code if code < 500 else status, {"Content-Type": "application/json; charset=utf-8",
                                                                       "Connection": "close"},
                                     json.dumps(body, ensure_ascii=False).encode("utf-8"))
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._refuse_method
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        # The app's middleware already writes one JSON access line per request.
        return


LISTEN_BACKLOG = 128


def make_server(app: Chalice, config: Config, host: str, port: int) -> LocalDevServer:
    """A threaded HTTP server for ``app``; ``port`` 0 picks a free port."""
    server = create_local_server(app, config, host, port)
    server.server.RequestHandlerClass = functools.partial(RequestHandler, app_object=app, config=config)
    # The stdlib listens with a backlog of 5: a burst of phones (or a concurrency test) would see
    # connections reset. Listening again on the bound socket raises the backlog.
    server.server.socket.listen(LISTEN_BACKLOG)
    return server


def bound_port(server: LocalDevServer) -> int:
    return int(server.server.server_address[1])
