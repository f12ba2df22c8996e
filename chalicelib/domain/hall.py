"""The service hall: filing, deciding and reading applications against the catalogue.

:class:`ServiceHall` ties the pure rules (:mod:`chalicelib.domain.forms`,
:mod:`chalicelib.domain.workflow`) to its collaborators, which it receives (repositories, the
notifier, the clock): it never builds a client. Areas with behaviour of their own (entry passes,
leave...) react to transitions through :func:`on_transition` hooks, so the engine never knows them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from chalicelib.domain.access import PERSON_TYPES, Actor, authorities
from chalicelib.domain.forms import FieldSpec, FormInvalid, ServiceDefinition, validate_form
from chalicelib.domain.identity import mask_id_number
from chalicelib.domain.idempotency import Claims, create_once
from chalicelib.domain.notifications import Notification
from chalicelib.domain.workflow import (
    Applicant,
    Application,
    Decision,
    NoApprover,
    Transition,
    act_as_applicant,
    can_view,
    decide,
    events_of,
    file_application,
    new_app_id,
    resolve_chain,
    resubmit,
)
from chalicelib.errors import Conflict, Invalid, NotFound
from chalicelib.observability import logger

Hook = Callable[[Application, Transition], None]
_HOOKS: dict[str, list[Hook]] = {}


def on_transition(area: str) -> Callable[[Hook], Hook]:
    """Register ``hook(application, transition)`` for the applications of services owned by ``area``.

    Hooks run after the transition is stored. They must be idempotent and quick (enqueue, do not
    call out): a hook that fails does not undo the transition; it is run again from the
    ``campus-hall-hooks`` queue (retried, then dead-lettered) until it succeeds.
    """
    def register(hook: Hook) -> Hook:
        _HOOKS.setdefault(area, []).append(hook)
        return hook
    return register


def run_hooks(app: Application, transition: Transition) -> None:
    """Run the owning area's hooks for one transition (each is idempotent). Raises what a hook raises."""
    for hook in _HOOKS.get(app.area or "", ()):
        hook(app, transition)


def hooks_of(area: str | None) -> list[Hook]:
    return list(_HOOKS.get(area or "", ()))


class AreaRules(Protocol):
    """What an area checks before the engine stores a transition of its services."""

    def file(self, applicant: Applicant, data: Mapping[str, Any], replacing: str | None,
             save: Callable[[], Application]) -> Application:
        """Check a new or resubmitted form (``replacing``: the application it edits), then call
        ``save`` (which stores it) and answer what it returned. Raises to refuse."""

    def may_cancel(self, app: Application) -> None:
        """Raise to refuse the applicant's cancellation of the approved ``app``."""


_RULES: dict[str, Callable[[], AreaRules]] = {}


def area_rules(area: str) -> Callable[[Callable[[], AreaRules]], Callable[[], AreaRules]]:
    """Register the factory of ``area``'s rules (built on use: they need the area's stores)."""
    def register(factory: Callable[[], AreaRules]) -> Callable[[], AreaRules]:
        _RULES[area] = factory
        return factory
    return register


def rules_of(area: str | None) -> AreaRules | None:
    factory = _RULES.get(area or "")
    return factory() if factory else None


# The fields (name -> type) an area's rules and hooks read from the form: a definition of the area
# that drops or retypes one is refused when the IT centre stores it, not found out at filing.
_AREA_FIELDS: dict[str, dict[str, str]] = {}


def area_fields(area: str, fields: Mapping[str, str]) -> None:
    """Declare the fields ``area`` reads from its services' forms."""
    _AREA_FIELDS[area] = dict(fields)


def area_field_problems(definition: ServiceDefinition) -> dict[str, str]:
    """Why ``definition`` lacks what its area reads (empty: nothing)."""
    wanted = _AREA_FIELDS.get(definition.area or "", {})
    have = {f.name: f.type for f in definition.fields}
    return {f"fields.{name}": f"the {definition.area} area needs a {kind} field {name!r}"
            for name, kind in wanted.items() if have.get(name) != kind}


class DefinitionStore(Protocol):
    def latest_versions(self) -> dict[str, ServiceDefinition]: ...
    def latest(self, service_id: str) -> ServiceDefinition | None: ...
    def get(self, service_id: str, version: int) -> ServiceDefinition | None: ...
    def add(self, definition: ServiceDefinition, changed_by: str, now: datetime) -> None: ...


class ApplicationStore(Protocol):
    def get(self, app_id: str) -> Application | None: ...
    def save(self, app: Application, expected_version: int | None) -> None: ...
    def mine(self, applicant: str, limit: int, after: str | None) -> tuple[list[Application], str | None]: ...
    def waiting_for(self, held: Iterable[str], limit: int, after: str | None) -> tuple[list[Application], str | None]: ...


class People(Protocol):
    def get_person(self, userid: str, *, consistent: bool = False) -> Any: ...
    def holders(self, authority: str) -> list[str]: ...


class AttachmentCheck(Protocol):
    def __call__(self, owner: str, spec: FieldSpec, key: str) -> str | None: ...
    def keep(self, keys: Sequence[str]) -> None: ...


class AuditLog(Protocol):
    def record(self, *, subject: str, actor: str, action: str, detail: dict[str, Any] | None = None) -> None: ...


class Sealer(Protocol):
    def seal(self, field: str, value: str) -> str: ...


class Catalogue:
    """The effective catalogue: shipped definitions, overridden by newer versions stored by the IT centre."""

    def __init__(self, shipped: Mapping[str, ServiceDefinition], stored: DefinitionStore) -> None:
        self._shipped = shipped
        self._stored = stored
        self._pinned: set[tuple[str, int]] = set()

    def current_all(self) -> dict[str, ServiceDefinition]:
        current = dict(self._shipped)
        for service_id, definition in self._stored.latest_versions().items():
            if service_id not in current or current[service_id].version <= definition.version:
                current[service_id] = definition
        return current

    def current(self, service_id: str) -> ServiceDefinition:
        """The newest version; a stored one wins over a shipped one of the same number. Raises: NotFound."""
        shipped = self._shipped.get(service_id)
        stored = self._stored.latest(service_id)
        if shipped is None and stored is None:
            raise NotFound(f"No service {service_id!r}.")
        if stored is None or (shipped is not None and shipped.version > stored.version):
            return shipped  # type: ignore[return-value]
        return stored

    def version(self, service_id: str, version: int) -> ServiceDefinition:
        """The definition an application was filed under (pinned in the store when it was filed)."""
        stored = self._stored.get(service_id, version)
        if stored is not None:
            return stored
        shipped = self._shipped.get(service_id)
        if shipped is not None and shipped.version == version:
            return shipped
        raise NotFound(f"Service {service_id!r} has no version {version}.")

    def pin(self, definition: ServiceDefinition, now: datetime) -> None:
        """Keep the version an application is filed under in the store.

        Shipped definitions live in the code package; once a later deploy ships a newer version,
        applications filed under the old one still need it (to resend, to run hooks). Stored
        versions are pinned already; a shipped one is stored on its first filing (once per process).
        """
        key = (definition.id, definition.version)
        if key in self._pinned:
            return
        if self._shipped.get(definition.id) == definition and self._stored.get(*key) is None:
            try:
                self._stored.add(definition, "catalogue", now)
            except Conflict:
                pass  # stored meanwhile by another filing
        self._pinned.add(key)

    def put(self, definition: ServiceDefinition, actor: Actor, now: datetime) -> ServiceDefinition:
        """Store ``definition`` as the next version of its service (the version given is ignored).

        Raises:
            Invalid: the definition drops or retypes a field its area reads.
            Conflict: another change got the same version number first.
        """
        problems = area_field_problems(definition)
        if problems:
            raise Invalid("The service's area reads fields this definition does not have.", problems)
        shipped = self._shipped.get(definition.id)
        stored_latest = self._stored.latest(definition.id)
        current = max(shipped.version if shipped else 0, stored_latest.version if stored_latest else 0)
        stored = definition.model_copy(update={"version": current + 1})
        self._stored.add(stored, actor.userid, now)
        return stored


def visible_services(catalogue: Mapping[str, ServiceDefinition], actor: Actor, category: str | None = None,
                     search: str | None = None) -> list[ServiceDefinition]:
    """The services ``actor`` may apply for, in catalogue order, optionally by category or a search term."""
    needle = (search or "").strip().lower()
    found = [d for d in catalogue.values()
             if d.applicants.admits(actor) and (category is None or d.category == category)
             and (not needle or needle in d.name.lower() or needle in d.description.lower() or needle in d.id)]
    order = {"epidemic": 0, "teaching": 1, "life": 2}
    return sorted(found, key=lambda d: (order[d.category], d.order, d.id))


@dataclass
class ServiceHall:
    catalogue: Catalogue
    applications: ApplicationStore
    people: People
    check_attachment: AttachmentCheck
    notify: Callable[[Notification], int]
    audit: AuditLog
    sealer: Sealer
    clock: Callable[[], datetime]
    claims: Claims | None = None  # idempotency keys of filings
    retry_hooks: Callable[[Application], None] | None = None  # queues a transition whose hooks failed


    # -- applicants -----------------------------------------------------------------------------
    def file(self, actor: Actor, service_id: str, data: Mapping[str, Any],
             idempotency_key: str | None = None) -> tuple[Application, bool]:
        """File an application under the current definition of the service.

        With an ``idempotency_key`` (the H5 sends one per form submission), a retry of the same
        submission within a day returns the application the first one filed instead of filing
        twice.

        Returns:
            The application and whether it was filed by an earlier request with the same key.

        Raises:
            NotFound: no such service, or not one ``actor`` may apply for.
            Invalid: the form breaks the definition (every bad field named) or a step has no approver.
            Conflict: the first request with this key is still being processed.
        """
        if idempotency_key is None or self.claims is None:
            app = self._file(actor, service_id, data, None)
        else:
            app, replayed = create_once(
                self.claims, f"file#{actor.userid}#{service_id}#{idempotency_key}", new_app_id(self.clock()),
                lambda app_id: self._file(actor, service_id, data, app_id), self.applications.get,
                "The same submission is being processed; try again in a moment.")
            if replayed:
                return app, True
        self._after(app)
        return app, False

    def _file(self, actor: Actor, service_id: str, data: Mapping[str, Any], app_id: str | None) -> Application:
        """Validate and store a new application (no messages or hooks yet)."""
        definition = self.catalogue.current(service_id)
        if not definition.applicants.admits(actor):
            raise NotFound(f"No service {service_id!r} for you.")
        if definition.filed_at:
            raise Conflict(f"{definition.name} is filed through {definition.filed_at}, not as an application.")
        applicant = Applicant(actor.userid, actor.person_type, actor.department, actor.class_id)
        return self._store_new(definition, actor, applicant, data, app_id, {})

    def file_for_outsider(self, applicant: Applicant, service_id: str, data: Mapping[str, Any],
                          extra: Mapping[str, Any], app_id: str | None = None) -> Application:
        """File for someone outside the directory (a visitor on a public form), then notify and run
        hooks. The area's own endpoint has checked who may; ``extra`` is kept with the application.

        Raises:
            Invalid: the form breaks the definition (every bad field named) or a step has no approver.
        """
        definition = self.catalogue.current(service_id)
        outsider = Actor(userid=applicant.userid, person_type=applicant.person_type, department="")
        app = self._store_new(definition, outsider, applicant, data, app_id, extra)
        self._after(app)
        return app

    def act_for_outsider(self, app: Application, verb: Literal["withdraw", "cancel"], comment: str) -> Application:
        """The outside applicant (authenticated by the area, e.g. by a lookup token) withdraws or cancels."""
        outsider = Actor(userid=app.applicant.userid, person_type=app.applicant.person_type, department="")
        moved = act_as_applicant(app, outsider, verb, comment, self.clock())
        self.applications.save(moved, app.version)
        self._after(moved)
        return moved

    def _store_new(self, definition: ServiceDefinition, actor: Actor, applicant: Applicant, data: Mapping[str, Any],
                   app_id: str | None, extra: Mapping[str, Any]) -> Application:
        clean, sealed = self._clean(definition, actor, data)
        chain = self._chain(definition, applicant, clean)
        app = file_application(definition, applicant, clean, chain, self.clock(), app_id)
        app = replace(app, extra={**extra, "sealed": sealed} if sealed else dict(extra))
        self.catalogue.pin(definition, self.clock())

        def save() -> Application:  # after the area's own checks: only a stored form keeps files
            self._keep_files(definition, clean)
            self.applications.save(app, None)
            return app

        rules = rules_of(definition.area)
        return rules.file(applicant, clean, None, save) if rules else save()

    def resubmit(self, actor: Actor, app_id: str, data: Mapping[str, Any]) -> Application:
        """Send a returned application again, edited; it is checked against the version it was filed under."""
        app = self.read(actor, app_id)
        definition = self.catalogue.version(app.service_id, app.service_version)
        clean, sealed = self._clean(definition, actor, data, already=app.data)
        chain = self._chain(definition, app.applicant, clean)
        moved = resubmit(app, actor, clean, chain, self.clock())
        moved = replace(moved, extra={**app.extra, "sealed": sealed} if sealed else
                        {k: v for k, v in app.extra.items() if k != "sealed"})

        def save() -> Application:
            self._keep_files(definition, clean, already=app.data)
            self.applications.save(moved, app.version)
            return moved

        rules = rules_of(definition.area)
        moved = rules.file(app.applicant, clean, app.app_id, save) if rules else save()
        self._after(moved)
        return moved

    def withdraw_or_cancel(self, actor: Actor, app_id: str, verb: Literal["withdraw", "cancel"],
                           comment: str = "") -> Application:
        app = self.read(actor, app_id)
        moved = act_as_applicant(app, actor, verb, comment, self.clock())
        rules = rules_of(app.area)
        if verb == "cancel" and rules is not None:
            rules.may_cancel(app)
        self.applications.save(moved, app.version)
        self._after(moved)
        return moved

    def mine(self, actor: Actor, limit: int, after: str | None) -> tuple[list[Application], str | None]:
        return self.applications.mine(actor.userid, limit, after)

    # -- approvers ------------------------------------------------------------------------------
    def todo(self, actor: Actor, limit: int, after: str | None) -> tuple[list[Application], str | None]:
        page, cursor = self.applications.waiting_for(authorities(actor), limit, after)
        return [a for a in page if a.applicant.userid != actor.userid], cursor

    def decide(self, actor: Actor, app_id: str, decision: Decision, comment: str) -> Application:
        """Raises: NotFound (not visible), Forbidden (not the current approver), Conflict (lost a
        race, or returning the form to someone outside the directory, who cannot edit it)."""
        app = self.read(actor, app_id)
        if decision == "return" and app.applicant.person_type not in PERSON_TYPES:
            raise Conflict("A visitor's form cannot be returned for editing; reject it with the reason instead.")
        moved = decide(app, actor, decision, comment, self.clock())
        self.applications.save(moved, app.version)
        self._after(moved)
        return moved

    # -- reading --------------------------------------------------------------------------------
    def read(self, actor: Actor, app_id: str) -> Application:
        """An application its applicant, its approvers or the people copied in may see.

        Reads by anyone but the applicant are audited (forms may hold health or identity data).

        Raises:
            NotFound: no such application, or not visible to ``actor`` (indistinguishable).
        """
        app = self.applications.get(app_id)
        if app is None or not can_view(app, actor):
            raise NotFound("No such application.")
        if actor.userid != app.applicant.userid:
            self.audit.record(subject=f"person#{app.applicant.userid}", actor=actor.userid,
                              action="application.read", detail={"app_id": app.app_id, "service": app.service_id})
        return app

    def attachment(self, actor: Actor, app_id: str, key: str) -> str:
        """Check that ``key`` is a file of an application ``actor`` may read; returns the key.

        Raises:
            NotFound: the application is not visible, or holds no such file (indistinguishable).
        """
        app = self.read(actor, app_id)
        definition = self.catalogue.version(app.service_id, app.service_version)
        files = {k for spec in definition.fields if spec.type == "attachment" for k in app.data.get(spec.name) or ()}
        if key not in files:
            raise NotFound("No such file on this application.")
        return key

    # -- internals ------------------------------------------------------------------------------
    def _clean(self, definition: ServiceDefinition, actor: Actor, data: Mapping[str, Any],
               already: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        """Validate the form; ID numbers are kept sealed, the form shows them masked.

        ``already`` is the form being edited: files it already holds stay acceptable even after
        their upload slot has expired.
        """
        def check_attachment(spec: FieldSpec, key: str) -> str | None:
            if already and key in (already.get(spec.name) or ()):
                return None
            return self.check_attachment(actor.userid, spec, key)

        try:
            clean = validate_form(definition, data, check_attachment=check_attachment,
                                  check_person=self._check_person)
        except FormInvalid as exc:
            raise Invalid("The form has errors.", {f"data.{name}": reason for name, reason in exc.fields.items()}) \
                from None
        sealed = {}
        for spec in definition.fields:
            if spec.type == "idcard" and spec.name in clean:
                sealed[spec.name] = self.sealer.seal(f"form.{spec.name}", clean[spec.name])
                clean[spec.name] = mask_id_number(clean[spec.name])
        return clean, sealed

    def _keep_files(self, definition: ServiceDefinition, clean: Mapping[str, Any],
                    already: Mapping[str, Any] | None = None) -> None:
        """Tag the form's new files kept, just before the form is stored (a failure stores nothing).

        Raises:
            UpstreamUnavailable: the storage could not be reached; the applicant tries again.
        """
        keys = [k for spec in definition.fields if spec.type == "attachment" for k in clean.get(spec.name) or ()
                if not (already and k in (already.get(spec.name) or ()))]
        if keys:
            self.check_attachment.keep(keys)

    def _check_person(self, spec: FieldSpec, userid: str) -> str | None:
        person = self.people.get_person(userid)
        if person is None or person.status != "active":
            return "no such person"
        if spec.person_types and person.person_type not in spec.person_types:
            return f"must be {' or '.join(spec.person_types)}"
        return None

    def _chain(self, definition: ServiceDefinition, applicant: Applicant, clean: Mapping[str, Any]) -> Any:
        try:
            chain = resolve_chain(definition, applicant, clean)
        except NoApprover as exc:
            raise Invalid(exc.message, {f"data.{k}" if not k.startswith("steps") else k: v
                                        for k, v in exc.fields.items()}) from None
        for index, step in enumerate(chain):
            if not [u for u in self.people.holders(step.authority) if u != applicant.userid]:
                raise Invalid(f"Nobody can approve the step {step.name!r} for you; please contact the IT centre.",
                              {f"steps.{index}": "no approver"})
        return chain

    def _after(self, app: Application) -> None:
        """Tell the people concerned and let the owning area react. The transition is stored
        already: if either fails it is queued and done again by the hooks consumer."""
        try:
            self.effects(app, len(app.history))
        except Exception as exc:
            logger.error("transition effects failed; queued for retry",
                         extra={"app_id": app.app_id, "area": app.area, "error_type": type(exc).__name__})
            if self.retry_hooks is None:
                raise
            self.retry_hooks(app)

    def effects(self, app: Application, version: int) -> None:
        """Messages and area hooks of the transition that made ``version`` (each idempotent).

        Raises: whatever the notifier or a hook raises.
        """
        transition = app.history[version - 1]
        for notification in self._notifications(app, transition, version):
            self.notify(notification)
        run_hooks(app, transition)

    def _notifications(self, app: Application, transition: Transition, version: int) -> list[Notification]:
        events = events_of(transition)
        event = events[-1]
        base = f"app:{app.app_id}:v{version}"
        notes = []
        # People outside the directory (visitors) have no WeCom account: they look their status up.
        if transition.actor != app.applicant.userid and app.applicant.person_type in PERSON_TYPES:
            step = app.chain[transition.step].name if transition.step is not None and transition.step < len(
                app.chain) else ""
            text = {"approved": "已通过", "rejected": "未通过", "returned": "被退回修改",
                    "advanced": f"已通过“{step}”，进入下一步"}.get(event, event)
            body = f"您的“{app.service_name}”申请{text}。" + (f"意见：{transition.comment}" if transition.comment else "")
            notes.append(Notification(key=f"{base}:applicant", recipients=(app.applicant.userid,),
                                      title=app.service_name, body=body))
        if version == app.version and app.status == "pending" and app.current_authority:
            approvers = [u for u in self.people.holders(app.current_authority) if u != app.applicant.userid]
            if approvers:
                notes.append(Notification(
                    key=f"{base}:approvers", recipients=tuple(approvers), title=f"待审批：{app.service_name}",
                    body=f"有一项“{app.service_name}”申请等待您审批（{app.chain[app.step or 0].name}）。"))
        copied = sorted({u for on, authority in app.cc if set(on) & set(events)
                         for u in self.people.holders(authority)} - {app.applicant.userid})
        if copied:
            notes.append(Notification(key=f"{base}:cc", recipients=tuple(copied), title=app.service_name,
                                      body=f"“{app.service_name}”有新的{_EVENT_NAMES.get(event, event)}，请知悉。"))
        return notes


_EVENT_NAMES = {"filed": "提交", "approved": "通过", "rejected": "驳回", "returned": "退回", "withdrawn": "撤回",
                "cancelled": "取消", "advanced": "审批进展"}
