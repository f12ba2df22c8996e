"""Every route of the app declares its contract and its access policy where it is defined."""

from app import app
from chalicelib.api.routing import route_spec_of


def test_every_chalice_route_has_a_declared_policy():
    undeclared = [
        f"{method} {path}"
        for path, methods in app.routes.items()
        for method, entry in methods.items()
        if route_spec_of(entry.view_function) is None or not route_spec_of(entry.view_function).policy.name
    ]
    assert undeclared == []


def test_only_the_documented_routes_are_public():
    public = sorted(
        f"{method} {path}"
        for path, methods in app.routes.items()
        for method, entry in methods.items()
        if route_spec_of(entry.view_function).policy.name == "public"
    )
    assert public == ["GET /healthz", "GET /openapi.json", "GET /visitor/entry-applications/{app_id}",
                      "POST /auth/wecom", "POST /visitor/entry-applications",
                      "POST /visitor/entry-applications/{app_id}/cancel"]
    local_only = [f"{m} {p}" for p, ms in app.routes.items() for m, e in ms.items()
                  if route_spec_of(e.view_function).policy.name == "local-only"]
    assert local_only == ["POST /auth/dev-login"]


def test_admin_routes_require_it_admin():
    for path, methods in app.routes.items():
        if path.startswith("/admin/"):
            for entry in methods.values():
                assert route_spec_of(entry.view_function).policy.name == "authenticated:it_admin"
