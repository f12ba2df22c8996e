"""The service endpoints through the test client, with the local stage's configuration."""

import json


def test_healthz_reports_the_stage_and_version(client):
    from chalicelib import __version__

    response = client.http.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok", "stage": "local", "version": __version__}


def test_openapi_lists_the_service_endpoints_as_public(client):
    document = json.loads(client.http.get("/openapi.json").body)
    assert document["paths"]["/healthz"]["get"]["x-policy"] == "public"
    assert document["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Health"
    }


def test_an_unknown_route_is_refused_as_api_gateway_does(client):
    # The test client mirrors API Gateway's own refusal; the local server and the deployed
    # gateway responses turn it into {"code": "not_found"} (see tests/e2e).
    response = client.http.get("/no/such/route")
    assert response.status_code == 403
    assert json.loads(response.body) == {"message": "Missing Authentication Token"}
