"""One typed settings object, read lazily from the environment.

Chalice hands a stage its variables through the environment (`.chalice/config.json`), and
`chalice.test.Client` applies them only for the duration of a call. Nothing here reads the
environment at import time: :func:`get_settings` builds the object on first use and rebuilds it
when the variables it depends on change, so a test that switches stage sees the new values.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chalicelib import __version__

Stage = Literal["local", "dev", "prod"]
_TIMES = r"^([01][0-9]|2[0-3]):[0-5][0-9](,([01][0-9]|2[0-3]):[0-5][0-9])*$"


class SettingsError(RuntimeError):
    """A required setting is missing or malformed; the message names every bad variable."""


class Settings(BaseSettings):
    """The platform's configuration. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    stage: Stage
    table_prefix: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    app_version: str = __version__
    campus_timezone: str = "Asia/Shanghai"

    # Deployed stages keep their secrets (every SecretStr field below) as SSM Parameter Store
    # SecureStrings under this path, named like the variables: /campus-platform/prod/WECOM_SECRET.
    # A secret given in the environment wins (the local stage's fake ones).
    secrets_parameter_path: str | None = Field(None, pattern=r"^/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/$")

    # Sessions: HS256 signing key (>= 32 characters) and lifetime.
    session_signing_key: SecretStr | None = None
    session_ttl_minutes: int = Field(120, ge=5, le=24 * 60)
    # Personal data at rest: base64 of 32 random bytes; encrypts ID numbers and keys their
    # lookup index. Losing it makes stored ID numbers unreadable: keep it in a secret store.
    id_card_key: SecretStr | None = None

    # WeCom (企业微信) application.
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    wecom_corp_id: str | None = None
    wecom_agent_id: str | None = None
    wecom_secret: SecretStr | None = None
    # Callback (接收消息) configuration of the app: Token and the 43-character EncodingAESKey.
    wecom_token: SecretStr | None = None
    wecom_encoding_aes_key: SecretStr | None = None
    wecom_callback_max_skew_seconds: int = Field(300, ge=30, le=3600)
    # WeCom drops (silently) messages to a member beyond these per app: ours defer instead.
    wecom_member_per_minute: int = Field(30, ge=2, le=30)
    wecom_member_per_hour: int = Field(1000, ge=2, le=1000)

    # Attachments: the private bucket presigned uploads go to, and their limits.
    uploads_bucket: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    upload_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    upload_url_minutes: int = Field(15, ge=1, le=60)

    # Counselling appointments (心理咨询预约): a booker may cancel until this long before the start;
    # one person may hold this many future bookings; slots are published at most this far ahead.
    counselling_cancel_cutoff_hours: int = Field(24, ge=0, le=14 * 24)
    counselling_max_future_bookings: int = Field(1, ge=1, le=10)
    counselling_horizon_days: int = Field(90, ge=1, le=365)

    # Suggestions export: one CSV file stays below this many bytes (a Lambda response is at most
    # 6 MB); a bigger export continues in the next file (X-Next-Cursor).
    suggestions_export_max_bytes: int = Field(4_000_000, ge=10_000, le=5_500_000)
    # Notices: where a notice's WeCom card links, with ``{notice_id}`` in it (the H5 page that
    # shows the notice and records the read receipt). Unset: the card links the notice's own url.
    notice_link_template: str | None = Field(None, pattern=r"^https://\S*\{notice_id\}\S*$")

    # Daily health report (每日健康填报). Times are HH:MM in the campus time zone.
    # A day's report can be filed and corrected until the cutoff; later it is closed (409).
    # Empty: open until midnight.
    health_report_cutoff: str = Field("20:00", pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$")
    # Abnormal when the temperature is at least this, the code has one of these colours, or one
    # of these flags is set (any symptom always counts).
    health_fever_from: Decimal = Field(Decimal("37.3"), ge=Decimal("36.0"), le=Decimal("40.0"), decimal_places=1)
    health_abnormal_codes: str = Field("yellow,red", pattern=r"^((green|yellow|red)(,(green|yellow|red))*)?$")
    health_abnormal_flags: str = Field(
        "close_contact,risk_area,quarantined",
        pattern=r"^((close_contact|risk_area|quarantined)(,(close_contact|risk_area|quarantined))*)?$")
    # The version of the consent text for processing health data; a new version asks everyone again.
    health_consent_version: str = Field("2026-09", pattern=r"^[A-Za-z0-9._-]{1,32}$")
    # Reports expire (DynamoDB TTL) this many days after their day.
    health_retention_days: int = Field(180, ge=1, le=3 * 366)
    # Reminders to those who have not filed; the counselors' lists of missing students; the
    # evening summary to leaders and department heads.
    health_reminder_times: str = Field("08:00,14:00", pattern=_TIMES)
    health_missing_digest_time: str = Field("16:00", pattern=_TIMES)
    health_summary_time: str = Field("20:00", pattern=_TIMES)
    # Who is expected to report (person types); people with status ``left`` never are.
    health_expected_types: str = Field("staff,student,third_party",
                                       pattern=r"^(staff|student|third_party)(,(staff|student|third_party))*$")
    # Where a case's WeCom message links (the H5 page of the case), with ``{case_id}`` in it.
    health_case_link_template: str | None = Field(None, pattern=r"^https://\S*\{case_id\}\S*$")
    # Figures-only callers (leaders) see no abnormal count of a department or class this small.
    health_min_cell: int = Field(5, ge=1, le=100)
    # Health data at rest: base64 of 32 random bytes sealing answers, reasons and case notes
    # (kept apart from ID_CARD_KEY, so either can be rotated or withheld alone).
    health_data_key: SecretStr | None = None
    # The H5 page of the daily report, linked from reminders.
    health_page_url: str | None = Field(None, pattern=r"^https://\S+$")

    # Campus entry (入校申请) and the door system (门禁).
    # A visitor's window is at most this many days; public applications per source address an
    # hour and per ID number a day beyond these are refused (429).
    entry_max_days: int = Field(7, ge=1, le=31)
    entry_max_lead_days: int = Field(30, ge=1, le=366)  # how far ahead a visit may start
    entry_rate_per_ip_hour: int = Field(20, ge=1, le=10_000)
    entry_rate_per_id_day: int = Field(5, ge=1, le=100)
    # A student's return-to-campus approval opens the gates to their campus card from 12 hours
    # before the announced return for this many days.
    entry_return_pass_days: int = Field(30, ge=1, le=366)
    # The door gateway the passes are pushed to: ``json`` (JSON over HTTPS, HMAC-signed with
    # DOOR_GATEWAY_SECRET) or ``hikvision`` (ISAPI, digest auth with DOOR_GATEWAY_USER/PASSWORD).
    door_gateway: Literal["json", "hikvision"] = "json"
    door_gateway_url: str | None = Field(None, pattern=r"^https?://\S+$")
    door_gateway_secret: SecretStr | None = None
    door_gateway_user: str | None = None
    door_gateway_password: SecretStr | None = None
    # The campus gates and, for ISAPI, their door numbers: ``east:1,west:2,...``.
    door_gates: str = Field("east:1,west:2,south:3,north:4", pattern=r"^[a-z0-9_-]{1,32}:[0-9]{1,3}(,[a-z0-9_-]{1,32}:[0-9]{1,3})*$")
    # First retry of a failed door sync after this many seconds, doubling up to 15 minutes.
    door_retry_base_seconds: int = Field(30, ge=1, le=900)
    # Signed door-event webhooks: the shared secret and the accepted clock skew.
    door_webhook_secret: SecretStr | None = None
    door_webhook_max_skew_seconds: int = Field(300, ge=30, le=3600)
    # Gate passages (and passes after their window) expire (DynamoDB TTL) after this many days.
    door_retention_days: int = Field(180, ge=1, le=3 * 366)

    # Student leave (请假) and staff leaving-Jinan registrations (离济备案). How many days the
    # chain of a leave grows at lives in the catalogue definition (``days(start, end) > 3``).
    # An absence lasts at most this many days; a leave may start this many hours in the past
    # (filed after the fact, e.g. when ill); records and away rows expire this long after the end.
    absence_max_days: int = Field(120, ge=1, le=366)
    absence_start_grace_hours: int = Field(24, ge=0, le=7 * 24)
    absence_retention_days: int = Field(400, ge=30, le=5 * 366)

    # The resource wing. WEBVPN_GATEWAY is the school's WebVPN base URL; resources opened through it
    # have their host encrypted under WEBVPN_KEY and WEBVPN_IV (16 characters each; the vendor's
    # default is wrdvpnisthebest!, and a school that changed it on the gateway sets it here).
    webvpn_gateway: str | None = Field(None, pattern=r"^https?://[^/?#\s]+$")
    webvpn_key: str = Field("wrdvpnisthebest!", pattern=r"^[\x21-\x7e]{16}$")
    webvpn_iv: str = Field("wrdvpnisthebest!", pattern=r"^[\x21-\x7e]{16}$")
    # The school's CARSI identity provider (its SAML entityID), named in WAYFless links.
    carsi_idp_entity_id: str | None = Field(None, pattern=r"^https://\S+$", max_length=300)
    # Callers from these networks (comma-separated CIDRs) open WebVPN resources directly: on the
    # campus network the resource answers without the gateway.
    campus_networks: str = Field("", pattern=r"^$|^[0-9a-fA-F:./]+(,[0-9a-fA-F:./]+)*$")
    # Visit counters (per resource, day and person type; never per person) expire after this long.
    resource_stats_retention_days: int = Field(1100, ge=30, le=10 * 366)

    @field_validator("campus_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for cidr in filter(None, value.split(",")):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a network: {cidr!r}") from exc
        return value

    @field_validator("campus_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def is_local(self) -> bool:
        return self.stage == "local"

    @property
    def tz(self) -> ZoneInfo:
        """The campus time zone: calendar days (one report per day, cutoffs) are counted in it."""
        return ZoneInfo(self.campus_timezone)

    @property
    def campus_cidrs(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in self.campus_networks.split(",") if cidr)

    @property
    def gate_doors(self) -> dict[str, int]:
        """The campus gates and their ISAPI door numbers, in the configured order."""
        return {gate: int(number) for gate, number in (item.split(":") for item in self.door_gates.split(","))}

    def table_name(self, logical_name: str) -> str:
        """The physical DynamoDB table name of a logical table, e.g. ``people``."""
        return f"{self.table_prefix}{logical_name}"

    def secret(self, name: str) -> str:
        """The value of a secret setting that a feature cannot work without.

        Secrets are optional at load so that, say, ``/healthz`` answers in a stage whose WeCom
        secret is not configured yet; the feature that needs one asks for it here.

        Raises:
            SettingsError: the secret is not configured (names the variable, never a value).
        """
        value = getattr(self, name, None)
        if value is None and self.secrets_parameter_path and name in SECRET_FIELDS:
            value = _stored_secrets(self.secrets_parameter_path).get(name)
        if value is None:
            raise SettingsError(f"invalid configuration: {name.upper()} is not set")
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


_ENV_KEYS = tuple(name.upper() for name in Settings.model_fields)
_lock = threading.Lock()
_cache: tuple[tuple[Any, ...], Settings] | None = None


def _environment_key() -> tuple[Any, ...]:
    """The values of the settings' variables, to tell whether the environment changed.

    Every table access asks for the settings, so this runs thousands of times a request burst:
    ``os.environ.get`` encodes and decodes each of ~60 names per call (~60 us); reading the
    encoded mapping CPython keeps behind ``os.environ`` costs a few microseconds.
    """
    raw = getattr(os.environ, "_data", None)
    if isinstance(raw, dict) and _ENCODED_KEYS is not None:
        return tuple(map(raw.get, _ENCODED_KEYS))
    return tuple(os.environ.get(name) for name in _ENV_KEYS)


try:
    _ENCODED_KEYS: tuple[Any, ...] | None = tuple(os.environ.encodekey(name) for name in _ENV_KEYS)  # type: ignore[attr-defined]
except AttributeError:  # not CPython's os.environ
    _ENCODED_KEYS = None


def get_settings() -> Settings:
    """Return the settings for the current environment.

    Raises:
        SettingsError: a required variable is missing or invalid (names the variables).
    """
    global _cache
    key = _environment_key()
    cached = _cache
    if cached is not None and cached[0] == key:
        return cached[1]
    with _lock:
        try:
            settings = Settings()  # type: ignore[call-arg]  (values come from the environment)
        except ValidationError as exc:
            problems = ", ".join(
                f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(f"invalid configuration: {problems}") from None
        _cache = (key, settings)
        return settings


SECRET_FIELDS = tuple(name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation))


_stored: dict[str, dict[str, str]] = {}


def _stored_secrets(path: str) -> dict[str, str]:
    """The secrets kept under ``path`` in SSM Parameter Store, by settings field name.

    Read when a feature first asks for a secret the environment does not give (``/healthz`` and
    the like never do), then kept for the life of the process (a Lambda container): a rotated
    secret reaches containers started after the change. A failed read is not kept, so the next
    request tries again. Other parameters under the path are ignored.

    Raises:
        SettingsError: the parameters cannot be read (names the path, never a value).
    """
    found = _stored.get(path)
    if found is not None:
        return found
    from chalicelib.integrations.parameters import ParameterStoreError, parameters_under

    try:
        values = parameters_under(path)
    except ParameterStoreError as exc:
        raise SettingsError(f"invalid configuration: cannot read the secrets under {path}: {exc}") from None
    wanted = {name.upper(): name for name in SECRET_FIELDS}
    found = {wanted[key]: value for key, value in values.items() if key in wanted}
    _stored[path] = found
    return found
