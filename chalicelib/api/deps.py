"""The collaborators views hand to the domain, each built once, on first use.

Nothing here is built at import: settings (and secrets) are only in the environment during an
invocation under ``chalice.test.Client``, and a Lambda that never logs anyone in never needs the
signing key. Objects that depend on settings are rebuilt if those settings change (tests switch
stages; a deployed function never does).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone

from chalicelib.db.audit import AuditRepository
from chalicelib.db.directory import DirectoryRepository
from chalicelib.db.hall import ApplicationRepository, ServiceRepository, UploadRepository
from chalicelib.db.kv import KeyValueStore
from chalicelib.db.messaging import MemberRates, OutboxRepository
from chalicelib.catalogue import shipped_definitions
from chalicelib.domain.hall import Catalogue, ServiceHall
from chalicelib.domain.workflow import Application
from chalicelib.domain.notifications import Notification, notify
from chalicelib.domain.uploads import AttachmentCheck
from chalicelib.integrations import storage
from chalicelib.integrations.queues import publish, publish_many
from chalicelib.domain.protection import FieldProtector
from chalicelib.domain.sessions import SessionTokens
from chalicelib.db.health import HealthRepository
from chalicelib.domain.health import CampusClock, HealthRules, parse_times
from chalicelib.domain.health_cases import HealthCases
from chalicelib.domain.health_desk import HealthDesk
from chalicelib.domain.health_stats import HealthStats
from chalicelib.resources import HALL_HOOKS, HEALTH_ALERTS, NOTIFICATIONS
from chalicelib.settings import get_settings


@functools.cache
def directory() -> DirectoryRepository:
    return DirectoryRepository()


@functools.cache
def audit() -> AuditRepository:
    return AuditRepository()


@functools.cache
def outbox() -> OutboxRepository:
    return OutboxRepository()


def member_rates() -> MemberRates:
    settings = get_settings()
    return _member_rates(settings.wecom_member_per_minute, settings.wecom_member_per_hour)


@functools.lru_cache(maxsize=4)
def _member_rates(per_minute: int, per_hour: int) -> MemberRates:
    return MemberRates(per_minute, per_hour)


def session_tokens() -> SessionTokens:
    settings = get_settings()
    return _session_tokens(settings.secret("session_signing_key"), settings.stage, settings.session_ttl_minutes)


@functools.lru_cache(maxsize=4)
def _session_tokens(secret: str, stage: str, ttl_minutes: int) -> SessionTokens:
    return SessionTokens(secret, stage, ttl=timedelta(minutes=ttl_minutes))


def notifier() -> Callable[[Notification], int]:
    """``notify`` bound to the notifications queue: what areas call to message people."""
    return functools.partial(notify, publish=_publish_parts)


def _publish_parts(parts: Sequence[dict], delay_seconds: int) -> None:
    publish_many(NOTIFICATIONS, parts, delay_seconds=delay_seconds)


@functools.cache
def kv() -> KeyValueStore:
    return KeyValueStore()


def protector() -> FieldProtector:
    return _protector(get_settings().secret("id_card_key"))


@functools.lru_cache(maxsize=4)
def _protector(key: str) -> FieldProtector:
    return FieldProtector(key)


@functools.cache
def uploads() -> UploadRepository:
    return UploadRepository()


@functools.cache
def catalogue() -> Catalogue:
    return Catalogue(shipped_definitions(), ServiceRepository())


def uploads_bucket() -> str:
    return get_settings().secret("uploads_bucket")


def hall() -> ServiceHall:
    """The service hall, wired to the stores, the notifications queue and the real clock."""
    return ServiceHall(
        catalogue=catalogue(), applications=applications(), people=directory(),
        check_attachment=AttachmentCheck(uploads(), lambda key: storage.stat(uploads_bucket(), key)),
        notify=notifier(), audit=audit(), sealer=protector(), clock=_utc_now, claims=kv(),
        retry_hooks=_retry_hooks,
    )


@functools.cache
def applications() -> ApplicationRepository:
    return ApplicationRepository()


def _retry_hooks(app: Application) -> None:
    publish(HALL_HOOKS, {"app_id": app.app_id, "version": app.version})


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- daily health reporting ---------------------------------------------------------------------
@functools.cache
def health_store() -> HealthRepository:
    return HealthRepository()


def campus_clock() -> CampusClock:
    settings = get_settings()
    cutoff = parse_times(settings.health_report_cutoff)
    return CampusClock(settings.tz, cutoff[0] if cutoff else None)


def campus_today() -> date:
    return campus_clock().day(_utc_now())


def health_rules() -> HealthRules:
    settings = get_settings()
    return HealthRules(fever_from=settings.health_fever_from,
                       abnormal_codes=frozenset(filter(None, settings.health_abnormal_codes.split(","))),
                       flags=frozenset(filter(None, settings.health_abnormal_flags.split(","))))


def health_desk() -> HealthDesk:
    """Filing and reading reports, wired to the tables, the alerts queue and the real clock."""
    settings = get_settings()
    return HealthDesk(store=health_store(), consents=directory(), sealer=health_sealer(), audit=audit(),
                      rules=health_rules(), campus=campus_clock(), consent_version=settings.health_consent_version,
                      retention_days=settings.health_retention_days, queue_alert=queue_health_alert, clock=_utc_now)


def health_cases() -> HealthCases:
    return HealthCases(store=health_store(), people=directory(), sealer=health_sealer(), notify=notifier(),
                       audit=audit(), open_report=health_desk().open, link=_case_link, claims=kv(), clock=_utc_now)


def health_stats() -> HealthStats:
    settings = get_settings()
    return HealthStats(store=health_store(), directory=directory(), open_report=health_desk().open, audit=audit(),
                       notify=notifier(), claims=kv(), queue_alert=queue_health_alert, campus=campus_clock(),
                       expected_types=settings.health_expected_types.split(","),
                       reminder_times=parse_times(settings.health_reminder_times),
                       digest_times=parse_times(settings.health_missing_digest_time),
                       summary_times=parse_times(settings.health_summary_time),
                       page_url=settings.health_page_url, retention_days=settings.health_retention_days,
                       min_cell=settings.health_min_cell, clock=_utc_now)


def health_sealer() -> FieldProtector:
    return _protector(get_settings().secret("health_data_key"))


def queue_health_alert(userid: str, day: str, version: int) -> None:
    publish(HEALTH_ALERTS, {"userid": userid, "day": day, "version": version})


def _case_link(case_id: str) -> str | None:
    template = get_settings().health_case_link_template
    return template.format(case_id=case_id) if template else None
