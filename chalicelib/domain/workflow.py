"""The approval state machine: pure rules, no storage.

An application moves through these states::

    filed ──> pending(step 0) ──approve──> pending(step k+1) ... ──approve──> approved ──cancel──> cancelled
                 │  ├─reject──> rejected                                         
                 │  └─return──> returned ──resubmit──> pending(step 0)
                 └─withdraw (also from returned) ──> withdrawn

A definition without steps is a filing: it is approved when it is filed.

Approvers are *authorities*, not people: ``counselor:<class>``, ``dept_head:<dept>``,
``role:<role>`` or ``user:<userid>`` (see :func:`chalicelib.domain.access.authorities`). A step
is resolved to an authority when the application is filed, and whoever holds that authority when
they decide may decide: a counselor who takes over a class inherits its to-do list.

Every transition appends to the history and bumps ``version``; storage writes the new state only
if the version it read is still current (optimistic locking), so two approvers deciding at once
give one success and one conflict.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from chalicelib.domain.access import Actor, authorities
from chalicelib.domain.forms import ServiceDefinition
from chalicelib.errors import Conflict, Forbidden, Invalid

Status = Literal["pending", "approved", "rejected", "returned", "withdrawn", "cancelled"]
Decision = Literal["approve", "reject", "return"]
Verb = Literal["file", "approve", "reject", "return", "resubmit", "withdraw", "cancel"]
FINAL: frozenset[str] = frozenset({"approved", "rejected", "withdrawn", "cancelled"})
OPEN: frozenset[str] = frozenset({"pending", "returned"})

# What each verb may start from and, for the applicant's own verbs, who may use it.
_APPLICANT_VERBS = {"resubmit": {"returned"}, "withdraw": {"pending", "returned"}, "cancel": {"approved"}}


@dataclass(frozen=True)
class ChainStep:
    name: str
    authority: str  # who decides: counselor:<class> | dept_head:<dept> | role:<role> | user:<userid>


@dataclass(frozen=True)
class Transition:
    at: str  # UTC ISO-8601
    actor: str
    verb: Verb
    from_status: str | None
    to_status: str
    step: int | None  # the step decided (approvals) or entered (pending)
    comment: str = ""
    authority: str | None = None  # for decisions: the authority the decider held for that step


@dataclass(frozen=True)
class Applicant:
    userid: str
    person_type: str
    department: str
    class_id: str | None = None


@dataclass(frozen=True)
class Application:
    app_id: str
    service_id: str
    service_version: int
    service_name: str
    applicant: Applicant
    data: Mapping[str, Any]
    chain: tuple[ChainStep, ...]
    status: Status
    step: int | None  # index into chain while pending
    version: int
    filed_at: str
    updated_at: str
    history: tuple[Transition, ...] = ()
    cc: tuple[tuple[tuple[str, ...], str], ...] = ()  # ((events...), authority)
    area: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # what an area keeps with it

    @property
    def current_authority(self) -> str | None:
        return self.chain[self.step].authority if self.status == "pending" and self.step is not None else None

    @property
    def decided_at(self) -> str | None:
        """When an approver's decision made it approved or rejected (not set for filings without
        steps, withdrawals or cancellations)."""
        last = self.history[-1] if self.history else None
        if self.status in ("approved", "rejected") and last is not None and last.verb in ("approve", "reject"):
            return last.at
        return None


class NoApprover(Invalid):
    """A step of the chain has nobody who could decide it (e.g. a department without a head)."""


def resolve_authority(resolver: str, applicant: Applicant, data: Mapping[str, Any], where: str) -> str:
    """The authority a resolver names for this applicant and form.

    Raises:
        NoApprover: it names nobody (a student without a class, an empty person field).
    """
    if resolver == "counselor_of_applicant":
        if not applicant.class_id:
            raise NoApprover("You have no class, so no counselor can handle this.", {where: "no counselor"})
        return f"counselor:{applicant.class_id}"
    if resolver == "dept_head_of_applicant":
        return f"dept_head:{applicant.department}"
    if resolver.startswith("role:"):
        return resolver
    userid = data.get(resolver[6:])  # field:<name>: a person named on the form
    if not userid:
        raise NoApprover(f"{resolver[6:]!r} must name the person who handles this.",
                         {resolver[6:]: "required: this person approves"})
    return f"user:{userid}"


def resolve_chain(definition: ServiceDefinition, applicant: Applicant, data: Mapping[str, Any]) -> tuple[ChainStep, ...]:
    """The steps that apply to this form, each resolved to the authority that decides it.

    Raises:
        NoApprover: a step cannot be resolved for this applicant.
    """
    return tuple(ChainStep(name=step.name, authority=resolve_authority(step.approver, applicant, data,
                                                                       f"steps.{index}"))
                 for index, step in definition.applicable_steps(data))


def resolve_cc(definition: ServiceDefinition, applicant: Applicant,
               data: Mapping[str, Any]) -> tuple[tuple[tuple[str, ...], str], ...]:
    """The people copied in, as ``((events...), authority)``."""
    return tuple((tuple(c.on), resolve_authority(c.to, applicant, data, f"cc.{index}"))
                 for index, c in enumerate(definition.cc))


def file_application(definition: ServiceDefinition, applicant: Applicant, data: Mapping[str, Any],
                     chain: tuple[ChainStep, ...], now: datetime, app_id: str | None = None) -> Application:
    """A new application: pending at its first step, or approved at once when there is no step."""
    at = _iso(now)
    status: Status = "pending" if chain else "approved"
    return Application(
        app_id=app_id or new_app_id(now), service_id=definition.id, service_version=definition.version,
        service_name=definition.name, applicant=applicant, data=dict(data), chain=chain, status=status,
        step=0 if chain else None, version=1, filed_at=at, updated_at=at,
        history=(Transition(at=at, actor=applicant.userid, verb="file", from_status=None, to_status=status,
                            step=0 if chain else None),),
        cc=resolve_cc(definition, applicant, data), area=definition.area,
    )


def decide(app: Application, actor: Actor, decision: Decision, comment: str, now: datetime) -> Application:
    """An approver's decision on the current step.

    Raises:
        Conflict: the application is not waiting for a decision (already decided, withdrawn...).
        Forbidden: the actor does not hold the current step's authority, or is the applicant.
    """
    if app.status != "pending" or app.step is None:
        raise Conflict(f"The application is {app.status}; there is nothing to decide.")
    if actor.userid == app.applicant.userid:
        raise Forbidden("You cannot decide your own application.")
    if app.chain[app.step].authority not in authorities(actor):
        raise Forbidden("You are not the approver of the current step.")
    if decision == "approve":
        last = app.step + 1 >= len(app.chain)
        status: Status = "approved" if last else "pending"
        next_step = None if last else app.step + 1
    elif decision == "reject":
        status, next_step = "rejected", None
    else:
        status, next_step = "returned", None
    moved = _moved(app, actor.userid, decision, status, next_step, comment, now, decided_step=app.step)
    decided = replace(moved.history[-1], authority=app.chain[app.step].authority)
    return replace(moved, history=(*moved.history[:-1], decided))


def act_as_applicant(app: Application, actor: Actor, verb: Literal["withdraw", "cancel"], comment: str,
                     now: datetime) -> Application:
    """The applicant withdraws an open application or cancels an approved one.

    Raises:
        Forbidden: the actor is not the applicant.
        Conflict: the application is not in a state the verb starts from.
    """
    _check_applicant(app, actor, verb)
    status: Status = "withdrawn" if verb == "withdraw" else "cancelled"
    return _moved(app, actor.userid, verb, status, None, comment, now, decided_step=None)


def resubmit(app: Application, actor: Actor, data: Mapping[str, Any], chain: tuple[ChainStep, ...],
             now: datetime) -> Application:
    """The applicant sends a returned application again with edited data: the chain starts over."""
    _check_applicant(app, actor, "resubmit")
    status: Status = "pending" if chain else "approved"
    moved = _moved(app, actor.userid, "resubmit", status, 0 if chain else None, "", now, decided_step=None)
    return replace(moved, data=dict(data), chain=chain)


def _check_applicant(app: Application, actor: Actor, verb: str) -> None:
    if actor.userid != app.applicant.userid:
        raise Forbidden("Only the applicant can do this.")
    if app.status not in _APPLICANT_VERBS[verb]:
        raise Conflict(f"A {app.status} application cannot be {_PAST[verb]}.")


_PAST = {"resubmit": "resubmitted", "withdraw": "withdrawn", "cancel": "cancelled"}


def _moved(app: Application, actor: str, verb: Verb, status: Status, step: int | None, comment: str,
           now: datetime, *, decided_step: int | None) -> Application:
    at = _iso(now)
    transition = Transition(at=at, actor=actor, verb=verb, from_status=app.status, to_status=status,
                            step=decided_step if decided_step is not None else step, comment=comment)
    return replace(app, status=status, step=step, version=app.version + 1, updated_at=at,
                   history=(*app.history, transition))


def events_of(transition: Transition) -> tuple[str, ...]:
    """The notification events of a transition: filed, approved (final), rejected, returned,
    advanced (to the next step)...; a filing approved at once is both filed and approved."""
    if transition.verb in ("file", "resubmit"):
        return ("filed", "approved") if transition.to_status == "approved" else ("filed",)
    return (transition.to_status if transition.to_status != "pending" else "advanced",)


def became_approved(app: Application, transition: Transition) -> bool:
    """The transition made the application approved (a final approval, or a filing without steps)."""
    return app.status == "approved" and transition.to_status == "approved" and transition.verb in (
        "approve", "file", "resubmit")


def was_cancelled(app: Application, transition: Transition) -> bool:
    """The applicant cancelled the approved application with this transition."""
    return transition.verb == "cancel" and app.status == "cancelled"


def can_view(app: Application, actor: Actor) -> bool:
    """The applicant, whoever holds an authority of the chain, and the people copied in."""
    if actor.userid == app.applicant.userid:
        return True
    held = authorities(actor)
    return any(step.authority in held for step in app.chain) or any(authority in held for _, authority in app.cc)


def history_is_consistent(app: Application) -> bool:
    """The history replays to the status and step stored (used by tests and repairs)."""
    if not app.history or app.history[0].verb != "file":
        return False
    status: str | None = None
    for transition in app.history:
        if transition.from_status != status:
            return False
        status = transition.to_status
    return status == app.status and len(app.history) == app.version


def new_app_id(now: datetime) -> str:
    """Sortable by filing time and unguessable: ``20261129T083000-<12 hex>``."""
    return f"{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"


def _iso(now: datetime) -> str:
    return now.isoformat(timespec="milliseconds")
