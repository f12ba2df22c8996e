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
from zoneinfo import ZoneInfo

from chalicelib.db.absence import AbsenceRepository
from chalicelib.db.audit import AuditRepository
from chalicelib.db.directory import DirectoryRepository
from chalicelib.db.hall import ApplicationRepository, ServiceRepository, UploadRepository
from chalicelib.db.kv import KeyValueStore
from chalicelib.db.messaging import MemberRates, OutboxRepository
from chalicelib.catalogue import shipped_definitions, shipped_resources
from chalicelib.domain.absence import AbsenceDesk
from chalicelib.db.resources import ResourceRepository, VisitCounterRepository
from chalicelib.domain.resources import ResourceDesk
from chalicelib.domain.webvpn import WebVpn
from chalicelib.domain.hall import Catalogue, ServiceHall
from chalicelib.domain.workflow import Application
from chalicelib.domain.notifications import Notification, notify, notify_all
from chalicelib.domain.uploads import KEPT, UPLOAD_TAG, AttachmentCheck
from chalicelib.integrations import storage
from chalicelib.integrations.queues import publish, publish_many
from chalicelib.domain.protection import FieldProtector
from chalicelib.domain.sessions import SessionTokens
from chalicelib.db.health import HealthRepository
from chalicelib.domain.health import CampusClock, HealthRules, parse_times
from chalicelib.domain.health_cases import HealthCases
from chalicelib.domain.health_desk import HealthDesk
from chalicelib.domain.health_stats import HealthStats
from chalicelib.db.door import DoorRepository
from chalicelib.domain.door import DoorLog, DoorPasses, Tracing
from chalicelib.domain.entry import EntryDesk
from chalicelib.integrations.door_gateway import DoorGateway, HikvisionGateway, JsonDoorGateway
from chalicelib.resources import DOOR_SYNC, HALL_HOOKS, HEALTH_ALERTS, NOTIFICATIONS
from chalicelib.errors import UpstreamUnavailable
from chalicelib.observability import logger
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


def notifier_of_many() -> Callable[[Sequence[Notification]], int]:
    """``notify_all`` bound to the notifications queue: a job's many messages in batched sends."""
    return functools.partial(notify_all, publish=_publish_parts)


def _publish_parts(parts: Sequence[dict], delay_seconds: int) -> None:
    publish_many(NOTIFICATIONS, parts, delay_seconds=delay_seconds)


def _keep_upload(key: str) -> None:
    """Tag an upload kept (a form holds it), so the bucket's lifecycle spares it.

    Raises:
        UpstreamUnavailable: S3 refused or did not answer; the form is not stored.
    """
    try:
        storage.set_tag(uploads_bucket(), key, UPLOAD_TAG, KEPT)
    except storage.StorageUnavailable as exc:
        logger.error("attachment not kept; the form is not stored", extra={"error_code": str(exc)})
        raise UpstreamUnavailable("The attachments could not be saved just now; please try again.") from None


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
        check_attachment=AttachmentCheck(uploads(), lambda key: storage.stat(uploads_bucket(), key), _keep_upload),
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
                       notify=notifier(), notify_all=notifier_of_many(), claims=kv(), queue_alert=queue_health_alert,
                       campus=campus_clock(),
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


# -- campus entry and the door system -----------------------------------------------------------
@functools.cache
def door_store() -> DoorRepository:
    return DoorRepository()


def door_passes() -> DoorPasses:
    settings = get_settings()
    return DoorPasses(store=door_store(), sealer=protector(), leases=kv(), queue_sync=queue_door_sync, gateway=door_gateway,
                      notify=notifier(), security=lambda: directory().holders("role:security"), clock=_utc_now,
                      audit=audit(),
                      retention=timedelta(days=settings.door_retention_days),
                      retry_base_seconds=settings.door_retry_base_seconds, max_attempts=DOOR_SYNC.max_receive_count)


def queue_door_sync(pass_id: str, version: int) -> None:
    publish(DOOR_SYNC, {"pass_id": pass_id, "version": version})


def door_gateway() -> DoorGateway:
    """The adapter the settings choose, built once per configuration (one HTTP session)."""
    settings = get_settings()
    if settings.door_gateway == "hikvision":
        return _hikvision(settings.secret("door_gateway_url"), settings.secret("door_gateway_user"),
                          settings.secret("door_gateway_password"), settings.door_gates, settings.campus_timezone)
    return _json_gateway(settings.secret("door_gateway_url"), settings.secret("door_gateway_secret"))


@functools.lru_cache(maxsize=4)
def _json_gateway(url: str, secret: str) -> DoorGateway:
    return JsonDoorGateway(url, secret)


@functools.lru_cache(maxsize=4)
def _hikvision(url: str, user: str, password: str, gates: str, timezone_name: str) -> DoorGateway:
    doors = {gate: int(number) for gate, number in (item.split(":") for item in gates.split(","))}
    return HikvisionGateway(url, user, password, doors, ZoneInfo(timezone_name))


def entry_desk() -> EntryDesk:
    settings = get_settings()
    offset = _utc_now().astimezone(settings.tz).utcoffset() or timedelta(0)
    return EntryDesk(hall=hall(), applications=applications(), passes=door_passes(), rates=kv(), claims=kv(),
                     sealer=protector(),
                     clock=_utc_now, max_days=settings.entry_max_days, max_lead_days=settings.entry_max_lead_days,
                     per_ip_hour=settings.entry_rate_per_ip_hour, per_id_day=settings.entry_rate_per_id_day,
                     day_offset_seconds=int(offset.total_seconds()), return_pass_days=settings.entry_return_pass_days,
                     all_gates=tuple(settings.gate_doors), card_of=_card_of)


def _card_of(userid: str) -> tuple[str, str]:
    """A member's name and campus card number (the userid when the directory has no card number)."""
    person = directory().get_person(userid)
    return (person.name, person.card_no or userid) if person is not None else (userid, userid)


def door_log() -> DoorLog:
    settings = get_settings()
    return DoorLog(store=door_store(), sealer=protector(), claims=kv(), is_member=_is_member,
                   member_of_id=directory().userid_of_id_lookup, member_of_card=directory().userid_of_card,
                   tz=settings.tz, clock=_utc_now,
                   max_skew_seconds=settings.door_webhook_max_skew_seconds,
                   retention=timedelta(days=settings.door_retention_days))


def _is_member(userid: str) -> bool:
    return directory().get_person(userid) is not None


def tracing() -> Tracing:
    return Tracing(store=door_store(), audit=audit(), tz=get_settings().tz)


# -- leave and travel ---------------------------------------------------------------------------
@functools.cache
def absence_store() -> AbsenceRepository:
    return AbsenceRepository(get_settings().absence_retention_days)


def absence_desk() -> AbsenceDesk:
    settings = get_settings()
    return AbsenceDesk(store=absence_store(), applications=applications(), people=directory(), locks=kv(),
                       notify=notifier(), audit=audit(), clock=_utc_now, tz=settings.tz,
                       max_days=settings.absence_max_days,
                       start_grace=timedelta(hours=settings.absence_start_grace_hours),
                       retention_days=settings.absence_retention_days)


def resource_desk() -> ResourceDesk:
    """The resource wing, with the school's WebVPN gateway and CARSI identity provider if configured."""
    settings = get_settings()
    return ResourceDesk(shipped=shipped_resources(), store=ResourceRepository(), counters=VisitCounterRepository(),
                        gateway=_webvpn(settings.webvpn_gateway, settings.webvpn_key, settings.webvpn_iv),
                        idp_entity_id=settings.carsi_idp_entity_id, tz=settings.tz,
                        retention_days=settings.resource_stats_retention_days)


@functools.lru_cache(maxsize=4)
def _webvpn(gateway: str | None, key: str, iv: str) -> WebVpn | None:
    return WebVpn(gateway.rstrip("/"), key.encode(), iv.encode()) if gateway else None
