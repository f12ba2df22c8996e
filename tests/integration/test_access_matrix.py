"""Cross-user matrix: who may read whose profile, for every role of the demo campus.

The expectations are written out by hand from DOMAIN.md's role table, not computed from the
access module, so the test checks the rules rather than restating them.
"""

import pytest

from tests.support.identity import call, load_cast, login

SUBJECTS = ["s001", "s011", "s016", "t001", "t002", "doc01", "w001"]
# 1 = 200 (in scope), 0 = 404 (out of scope, indistinguishable from absent)
EXPECTED = {
    #            s001 s011 s016 t001 t002 doc01 w001
    "admin":    (1,   1,   1,   1,   1,   1,    1),  # it_admin: directory, campus-wide
    "doc01":    (1,   1,   1,   1,   1,   1,    1),  # hospital: everyone (health cases)
    "bw01":     (1,   1,   1,   1,   1,   1,    1),  # security: everyone (tracing)
    "hr01":     (0,   0,   0,   1,   1,   1,    0),  # hr: staff only
    "xg01":     (1,   1,   1,   0,   0,   0,    0),  # student affairs: students only
    "dean01":   (1,   1,   0,   1,   0,   0,    0),  # dept head of cs: cs members
    "fdy01":    (1,   1,   0,   0,   0,   0,    0),  # counselor of cs2001, cs2002
    "fdy02":    (0,   0,   1,   0,   0,   0,    0),  # counselor of fl2001
    "hq01":     (0,   0,   0,   0,   0,   0,    0),  # logistics: repair orders only
    "xl01":     (0,   0,   0,   0,   0,   0,    0),  # psych centre: bookings only
    "leader01": (0,   0,   0,   0,   0,   0,    0),  # leaders: aggregates only
    "t001":     (0,   0,   0,   1,   0,   0,    0),  # a teacher: themselves
    "s001":     (1,   0,   0,   0,   0,   0,    0),  # a student: themselves
    "w001":     (0,   0,   0,   0,   0,   0,    1),  # a contractor: themselves
}
CASES = [(actor, subject, allowed) for actor, row in EXPECTED.items() for subject, allowed in zip(SUBJECTS, row)]


class Tokens(dict):
    """Logs each demo person in on first use."""

    def __init__(self, client):
        super().__init__()
        self.client = client

    def __missing__(self, userid):
        self[userid] = login(self.client, userid)
        return self[userid]


@pytest.fixture
def tokens(client):
    load_cast()
    return Tokens(client)


@pytest.mark.parametrize(("actor", "subject", "allowed"), CASES, ids=[f"{a}->{s}" for a, s, _ in CASES])
def test_reading_a_profile_follows_the_role_scopes(client, tokens, actor, subject, allowed):
    status, body = call(client, "GET", f"/people/{subject}", tokens[actor])
    if allowed:
        assert status == 200
        assert body["userid"] == subject
        assert "card_no" not in body and "id_number_masked" not in body
    else:
        assert (status, body["code"]) == (404, "not_found")


def test_out_of_scope_and_absent_people_look_the_same(client, tokens):
    assert call(client, "GET", "/people/s016", tokens["fdy01"]) == call(client, "GET", "/people/nobody", tokens["fdy01"])


@pytest.mark.parametrize("actor", [a for a in EXPECTED if a != "admin"])
def test_only_it_admin_reaches_the_admin_routes(client, tokens, actor):
    assert call(client, "GET", "/admin/people/s001", tokens[actor])[0] == 403
    assert call(client, "PATCH", "/admin/people/s001", tokens[actor], {"status": "left"})[0] == 403
    assert call(client, "POST", "/admin/directory/import", tokens[actor], {"rows": [{"userid": "x"}]})[0] == 403
    assert call(client, "GET", "/admin/people/s001", tokens["admin"])[0] == 200
