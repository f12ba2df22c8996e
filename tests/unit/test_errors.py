"""The one error table."""

import pytest

from chalicelib.errors import (
    ERROR_TABLE,
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    MalformedJSON,
    NotFound,
    RateLimited,
    Unauthorized,
    render_error,
    render_internal_error,
)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequest(), 400, "bad_request"),
        (MalformedJSON(), 400, "malformed_json"),
        (Unauthorized(), 401, "unauthorized"),
        (Forbidden(), 403, "forbidden"),
        (NotFound(), 404, "not_found"),
        (Conflict(), 409, "conflict"),
        (Invalid(), 422, "invalid"),
        (RateLimited(), 429, "rate_limited"),
    ],
)
def test_each_domain_error_maps_to_its_status_and_code(error, status, code):
    rendered_status, body = render_error(error)
    assert (rendered_status, body["code"]) == (status, code)
    assert body["message"] == error.default_message


def test_a_subclass_without_its_own_entry_inherits_its_parents():
    class SlotTaken(Conflict):
        pass

    assert render_error(SlotTaken("Slot taken."))[0] == 409
    assert render_error(SlotTaken("Slot taken."))[1] == {"code": "conflict", "message": "Slot taken."}


def test_validation_errors_carry_fields_and_others_do_not():
    assert render_error(Invalid(fields={"seats": "too many"}))[1]["fields"] == {"seats": "too many"}
    assert "fields" not in render_error(NotFound())[1]


def test_internal_errors_carry_the_request_id_only():
    status, body = render_internal_error("req-1")
    assert status == 500
    assert body["request_id"] == "req-1"
    assert set(body) == {"code", "message", "request_id"}


def test_every_entry_is_a_domain_error_with_a_distinct_code():
    codes = [code for _, code in ERROR_TABLE.values()]
    assert all(issubclass(cls, DomainError) for cls in ERROR_TABLE)
    assert len(codes) == len(set(codes))
