"""Campus entry (入校申请): visitors apply on a public form; approval grants a door pass.

A visitor is not in the directory and never signs in. :class:`EntryDesk` files their form as a
``campus-entry`` application of the service hall (so the host and the security office decide it
in their usual to-do lists), returns a private lookup token (only its hash is stored) with which
the visitor reads the status or cancels, and limits applications per source address and per ID
number. The hall's ``entry`` hook (:meth:`EntryDesk.on_transition`) turns an approval into a door
pass and a rejection, withdrawal or cancellation into a revoke; a student's approved return to
campus (``student-return``) grants their campus card the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from chalicelib.domain.door import DoorPass, DoorPasses, ID_LOOKUP_FIELD, id_person
from chalicelib.domain.identity import InvalidIdentity, normalise_id_number
from chalicelib.domain.idempotency import create_once
from chalicelib.domain.workflow import Applicant, Application, Transition, became_approved, new_app_id
from chalicelib.errors import Invalid, NotFound, RateLimited

VISITOR_SERVICE = "campus-entry"
RETURN_SERVICE = "student-return"
START_GRACE = timedelta(minutes=15)  # the time it takes to fill the form in


class Hall(Protocol):
    def file_for_outsider(self, applicant: Applicant, service_id: str, data: Mapping[str, Any],
                          extra: Mapping[str, Any], app_id: str | None = None) -> Application: ...
    def act_for_outsider(self, app: Application, verb: Any, comment: str) -> Application: ...


class AppStore(Protocol):
    def get(self, app_id: str) -> Application | None: ...
    def save(self, app: Application, expected_version: int | None) -> None: ...


class Rates(Protocol):
    def hit(self, key: str, window_seconds: int, offset_seconds: int = 0) -> int: ...


class Claims(Protocol):  # what create_once needs
    def claim(self, key: str, ttl_seconds: float, value: str = "") -> bool: ...
    def get(self, key: str) -> str | None: ...


class Opener(Protocol):
    def open(self, field: str, token: str) -> str: ...
    def lookup_key(self, field: str, value: str) -> str: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class EntryDesk:
    hall: Hall
    applications: AppStore
    passes: DoorPasses
    rates: Rates
    claims: Claims
    sealer: Opener
    clock: Callable[[], datetime]
    max_days: int = 7
    max_lead_days: int = 30  # how far ahead a visit may start
    per_ip_hour: int = 20
    per_id_day: int = 5
    day_offset_seconds: int = 8 * 3600  # the campus clock's offset from UTC: quota days start at midnight
    return_pass_days: int = 30
    all_gates: tuple[str, ...] = ("east", "west", "south", "north")  # a returning student's card opens all
    # A member's name (for the door system's display) and campus card number.
    card_of: Callable[[str], tuple[str, str]] = lambda userid: (userid, userid)

    # -- the visitor --------------------------------------------------------------------------
    def apply(self, data: Mapping[str, Any], source_ip: str,
              idempotency_key: str | None = None) -> tuple[Application, str]:
        """File a visitor's application; returns it and the lookup token (shown once).

        With an ``idempotency_key`` (the form sends one per submission), a resubmission by the same
        ID number files nothing new: it returns the first application with a fresh token (the first
        answer, and its token, are taken to be lost; the earlier token stops working).

        Raises:
            RateLimited: too many applications from this address this hour, or for this ID number
                today.
            Invalid: a field is wrong (each named), the window is in the past, ends before it
                starts or is longer than ``max_days``, or the host is not an active member of staff.
        """
        if self.rates.hit(f"entry-ip:{self.sealer.lookup_key('entry.ip', source_ip)}", 3600) > self.per_ip_hour:
            raise RateLimited("Too many applications from this network; try again in an hour.")
        self._check_window(data)
        applicant_id = "visitor"
        try:
            id_number = normalise_id_number(str(data.get("id_number") or ""))
        except InvalidIdentity:
            id_number = None  # the form check below names the field
        if id_number is not None:
            key = self.sealer.lookup_key(ID_LOOKUP_FIELD, id_number)
            if self.rates.hit(f"entry-id:{key}", 86400, self.day_offset_seconds) > self.per_id_day:
                raise RateLimited("Too many applications for this ID number today; try again tomorrow.")
            applicant_id = id_person(key)
        token = secrets.token_urlsafe(24)

        def file(app_id: str | None) -> Application:
            try:
                return self.hall.file_for_outsider(Applicant(applicant_id, "visitor", ""), VISITOR_SERVICE, data,
                                                   {"lookup": token_hash(token)}, app_id)
            except Invalid as exc:
                raise Invalid(exc.message, {k.removeprefix("data."): v for k, v in exc.fields.items()}) from None

        if idempotency_key is None or id_number is None:
            return file(None), token
        app, replayed = create_once(
            self.claims, f"visit#{applicant_id}#{idempotency_key}", new_app_id(self.clock()), file,
            self.applications.get, "The same application is being filed; try again in a moment.")
        if replayed:
            app = replace(app, extra={**app.extra, "lookup": token_hash(token)})
            self.applications.save(app, app.version)
        return app, token

    def lookup(self, app_id: str, token: str) -> Application:
        """The application the token belongs to. Raises NotFound (unknown id or wrong token alike)."""
        app = self.applications.get(app_id)
        expected = (app.extra.get("lookup") if app is not None and app.service_id == VISITOR_SERVICE else None) or ""
        # Compared in constant time, and a missing application costs the same comparison.
        if not hmac.compare_digest(expected.encode() or b"-", token_hash(token).encode()) or app is None:
            raise NotFound("No such application, or the token does not match.")
        return app

    def cancel(self, app_id: str, token: str, reason: str) -> Application:
        """The visitor withdraws a pending application or cancels an approved one (the pass is
        revoked). Cancelling again answers the same (idempotent).

        Raises:
            NotFound: unknown id or wrong token.
            Conflict: the application was rejected.
        """
        app = self.lookup(app_id, token)
        if app.status in ("withdrawn", "cancelled"):
            # A repeated cancel (the first answer was lost) answers the same, and makes sure the
            # pass is revoked even if the first one's hook never ran.
            self.passes.revoke(app.app_id, app.status)
            return app
        verb = "cancel" if app.status == "approved" else "withdraw"
        return self.hall.act_for_outsider(app, verb, reason)

    def pass_of(self, app_id: str) -> DoorPass | None:
        return self.passes.store.get_pass(app_id)

    # -- the hall's hook ----------------------------------------------------------------------
    def on_transition(self, app: Application, transition: Transition) -> DoorPass | None:
        """Grant the pass of an approved application; revoke it when the application ends otherwise.
        Idempotent (the hooks queue may run it again)."""
        if became_approved(app, transition):
            return self._grant(app)
        if transition.to_status in ("rejected", "withdrawn", "cancelled"):
            return self.passes.revoke(app.app_id, transition.to_status)
        return None

    def _grant(self, app: Application) -> DoorPass | None:
        data = app.data
        if app.service_id == VISITOR_SERVICE:
            number = self.sealer.open("form.id_number", app.extra["sealed"]["id_number"])
            person = app.applicant.userid if app.applicant.person_type == "visitor" else \
                id_person(self.sealer.lookup_key(ID_LOOKUP_FIELD, number))
            return self.passes.grant(
                pass_id=app.app_id, person=person, name=str(data["name"]), kind="visitor", host=str(data["host"]),
                credential_kind="id_card", credential_number=number, gates=tuple(data["gates"]),
                valid_from=datetime.fromisoformat(data["visit_start"]),
                valid_to=datetime.fromisoformat(data["visit_end"]))
        if app.service_id == RETURN_SERVICE:
            back = datetime.fromisoformat(data["return_time"])
            name, card = self.card_of(app.applicant.userid)
            return self.passes.grant(
                pass_id=app.app_id, person=app.applicant.userid, name=name, kind="return", host=None,
                credential_kind="campus_card", credential_number=card,
                gates=self.all_gates, valid_from=back - timedelta(hours=12),
                valid_to=back + timedelta(days=self.return_pass_days))
        return None

    def _check_window(self, data: Mapping[str, Any]) -> None:
        problems: dict[str, str] = {}
        try:
            start = datetime.fromisoformat(str(data.get("visit_start")))
            end = datetime.fromisoformat(str(data.get("visit_end")))
        except ValueError:
            return  # the form check names the bad field
        if start.tzinfo is None or end.tzinfo is None:
            return
        now = self.clock()
        if start < now - START_GRACE:
            problems["visit_start"] = "is in the past"
        elif start > now + timedelta(days=self.max_lead_days):
            problems["visit_start"] = f"a visit may be booked at most {self.max_lead_days} days ahead"
        if end <= start:
            problems["visit_end"] = "must be after visit_start"
        elif end - start > timedelta(days=self.max_days):
            problems["visit_end"] = f"the visit may last at most {self.max_days} days"
        if problems:
            raise Invalid("The visit window is not acceptable.", problems)
