"""People: a profile in the reader's scope."""

from __future__ import annotations

from chalicelib.api import deps
from chalicelib.api.routing import Area
from chalicelib.api.schemas import PersonSummary
from chalicelib.api.security import authenticated
from chalicelib.domain.access import Actor
from chalicelib.domain.people import read_person
from chalicelib.errors import NotFound

area = Area("people")


@area.route("/people/{userid}", "GET", summary="A person in my scope", policy=authenticated(),
            response=PersonSummary, errors=(NotFound,))
def get_person(userid: str, actor: Actor) -> PersonSummary:
    """Counselors see their classes' students, department heads their members, HR staff, student
    affairs students, campus-wide offices everyone; anyone else only themselves (404 otherwise)."""
    return PersonSummary.of(read_person(actor, userid, deps.directory()))
