"""WeCom callbacks: URL verification, directory change events, and the nightly directory sync.

* ``GET /wecom/callback``: WeCom's URL verification (answers the decrypted ``echostr``).
* ``POST /wecom/callback``: WeCom's events. Verified, decrypted, de-duplicated and queued on
  ``wecom-events``; WeCom gets ``success`` at once (it waits 5 s, then retries up to three times).
* ``apply_wecom_changes``: the ``wecom-events`` consumer; applies directory changes.
* ``sync_wecom_directory``: the nightly reconciliation with WeCom's directory (02:30 campus time).

The rules live in :mod:`chalicelib.domain.wecom_events`; this module wires them to HTTP, SQS and
the schedule.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Cron, Response
from chalice.app import CloudWatchEvent, Request, SQSEvent
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from pydantic import ValidationError

from chalicelib.api import deps
from chalicelib.api.routing import Area
from chalicelib.db.directory import DirectoryRepository
from chalicelib.db.kv import KeyValueStore
from chalicelib.domain.wecom_events import (
    ContactChange,
    MalformedEvent,
    Outcome,
    WeComDirectory,
    accept_callback,
    apply_change,
    sync_directory,
)
from chalicelib.errors import BadRequest, DomainError, Unauthorized
from chalicelib.integrations.queues import publish
from chalicelib.integrations.wecom import wecom_client
from chalicelib.integrations.wecom_crypto import CallbackCrypto, CallbackError
from chalicelib.observability import logger
from chalicelib.resources import WECOM_EVENTS
from chalicelib.settings import SettingsError, get_settings

area = Area("wecom")

# WeCom posts XML; which Content-Type it sends is not documented, and a request without one is
# treated by Chalice as application/json: accept them all, the body is parsed as XML regardless.
XML_CONTENT_TYPES = ("text/xml", "application/xml", "application/json", "text/plain")
TEXT_PLAIN = "text/plain; charset=utf-8"
# WeCom's envelopes are a few hundred bytes; anything near this is not WeCom.
MAX_ENVELOPE_BYTES = 64 * 1024
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_UNSIGNED = "The request is not signed by WeCom."


@dataclass
class SignedWeCom:
    """Admits requests signed with the app's callback Token, as WeCom signs them.

    The signature (``msg_signature``: SHA-1 of the sorted Token, ``timestamp``, ``nonce`` and the
    ciphertext) covers ``echostr`` on GET and the ``<Encrypt>`` of the XML envelope on POST. The
    ``timestamp`` must be within ``WECOM_CALLBACK_MAX_SKEW_SECONDS`` of ``clock`` (a captured
    request cannot be replayed later; within the window the replay guard refuses it).

    Raises (from ``check``):
        BadRequest: the envelope is not XML, has a DTD, or has no ``Encrypt``; GET without ``echostr``.
        Unauthorized: a parameter missing, a bad signature, or a stale or future timestamp.
    """

    clock: Callable[[], float] = time.time
    name: str = "signed:wecom"
    errors: tuple[type[DomainError], ...] = field(default=(Unauthorized, BadRequest))

    def check(self, request: Request) -> None:
        params = request.query_params or {}
        signature, timestamp, nonce = (params.get(k) for k in ("msg_signature", "timestamp", "nonce"))
        if not signature or not timestamp or not nonce:
            raise Unauthorized(_UNSIGNED)
        ciphertext = signed_ciphertext(request)
        try:
            callback_crypto().verify(signature, timestamp, nonce, ciphertext)
        except CallbackError:
            raise Unauthorized(_UNSIGNED) from None
        skew = get_settings().wecom_callback_max_skew_seconds
        if not _TIMESTAMP.fullmatch(timestamp) or abs(self.clock() - int(timestamp)) > skew:
            raise Unauthorized("The request's timestamp is outside the accepted window.")
        return None


SIGNED_WECOM = SignedWeCom()


def signed_ciphertext(request: Request) -> str:
    """What WeCom signed and encrypted: ``echostr`` (GET) or the envelope's ``Encrypt`` (POST).

    Raises:
        BadRequest: no ``echostr``; an envelope that is too large, not XML, carries a DTD or
            entities (parsed with defusedxml), or has no ``Encrypt``.
    """
    if request.method == "GET":
        echostr = (request.query_params or {}).get("echostr")
        if not echostr:
            raise BadRequest("URL verification needs echostr.")
        return echostr
    raw = request.raw_body or b""
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise BadRequest("The body is too large for a WeCom envelope.")
    try:
        root = ElementTree.fromstring(raw, forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException, ValueError):
        raise BadRequest("The body is not a WeCom XML envelope.") from None
    encrypted = root.find("Encrypt")
    ciphertext = (encrypted.text or "").strip() if encrypted is not None else ""
    if not ciphertext:
        raise BadRequest("The WeCom envelope has no Encrypt element.")
    return ciphertext


def open_ciphertext(ciphertext: str) -> str:
    """Decrypt what WeCom sealed for this corp.

    Raises:
        BadRequest: not WeCom ciphertext (base64, padding or framing broken).
        Unauthorized: sealed for another corp (its receive id is not ``WECOM_CORP_ID``).
    """
    try:
        return callback_crypto().decrypt(ciphertext)
    except CallbackError as exc:
        if exc.reason == "wrong_receiver":
            raise Unauthorized("The message is sealed for another corp.") from None
        raise BadRequest("The message cannot be decrypted.") from None


def callback_crypto() -> CallbackCrypto:
    settings = get_settings()
    if not settings.wecom_corp_id:
        raise SettingsError("invalid configuration: WECOM_CORP_ID is not set")
    return _crypto(settings.secret("wecom_token"), settings.secret("wecom_encoding_aes_key"), settings.wecom_corp_id)


@functools.lru_cache(maxsize=4)
def _crypto(token: str, encoding_aes_key: str, corp_id: str) -> CallbackCrypto:
    return CallbackCrypto(token, encoding_aes_key, corp_id)


def text_response(text: str) -> Response:
    return Response(body=text, status_code=200, headers={"Content-Type": TEXT_PLAIN})


# -- routes -----------------------------------------------------------------------------------


@area.route("/wecom/callback", "GET", summary="WeCom URL verification: the decrypted echostr, as text",
            policy=SIGNED_WECOM, errors=(BadRequest, Unauthorized))
def verify_wecom_callback_url(request: Request) -> Response:
    """WeCom calls this when an administrator saves the callback URL, with query parameters
    ``msg_signature``, ``timestamp``, ``nonce`` and ``echostr``. The answer is the plaintext of
    ``echostr`` exactly (no quotes, BOM or newline), as ``text/plain``."""
    return text_response(open_ciphertext(signed_ciphertext(request)))


@area.route("/wecom/callback", "POST", summary="Receive a WeCom event (directory changes are queued)",
            policy=SIGNED_WECOM, errors=(BadRequest, Unauthorized), content_types=XML_CONTENT_TYPES)
def receive_wecom_callback(request: Request) -> Response:
    """WeCom's encrypted event, ``<xml><ToUserName/><AgentID/><Encrypt/></xml>``, with query
    parameters ``msg_signature``, ``timestamp`` and ``nonce``. Directory changes (``change_contact``)
    are queued for ``apply_wecom_changes``; other events are acknowledged and dropped. Answers
    ``success`` (text/plain), also for a request already accepted (a WeCom retry or a replay: it is
    not queued twice)."""
    message = open_ciphertext(signed_ciphertext(request))
    try:
        outcome = accept_callback(message, replay_guard(), lambda m: publish(WECOM_EVENTS, m),
                                  replay_ttl_seconds=2 * get_settings().wecom_callback_max_skew_seconds)
    except MalformedEvent as exc:
        raise BadRequest(f"The decrypted event is unusable: {exc}.") from None
    logger.info("wecom callback", extra={"outcome": outcome})
    return text_response("success")


def replay_guard() -> KeyValueStore:
    return deps.kv()


# -- the consumer and the job -----------------------------------------------------------------


def wecom_api() -> WeComDirectory:
    """WeCom's directory API (tests replace this provider with a fake)."""
    return wecom_client()


def wecom_directory() -> DirectoryRepository:
    return deps.directory()


@area.blueprint.on_sqs_message(queue=WECOM_EVENTS.name, batch_size=WECOM_EVENTS.batch_size)
def apply_wecom_changes(event: SQSEvent) -> dict[str, Any]:
    """Apply queued WeCom directory changes; a failed record is reported alone (retried, then DLQ).

    Logs the batch's outcome counts; ``still_active`` counts leavings skipped because WeCom lists
    the member as active again (an event applied out of order).
    """
    outcomes: Counter[str] = Counter()

    def handle(record: SQSRecord) -> None:
        outcomes[_apply_record(record)] += 1

    try:
        return process_partial_response(event=event.to_dict(), record_handler=handle,
                                        processor=BatchProcessor(EventType.SQS), context=event.context)
    finally:
        if outcomes["still_active"]:
            logger.warning("wecom leavings skipped: member active in WeCom",
                           extra={"skipped_still_active": outcomes["still_active"]})
        logger.info("wecom changes applied", extra={"outcomes": dict(outcomes)})


def _apply_record(record: SQSRecord) -> Outcome:
    """Apply one queued change.

    Raises:
        ValueError: the message is not a change this code understands. Built from pydantic's
            error locations and messages only: Powertools puts the failure's text and traceback
            into its BatchProcessingError, and a ValidationError's text carries the input values
            (names, userids).
        Conflict, Exception: from :func:`apply_change` (the record is retried, then DLQ).
    """
    try:
        change = ContactChange.from_message(json.loads(record.body))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False, include_context=False)
        )
        raise ValueError(f"unusable wecom change ({problems})") from None
    outcome = apply_change(change, wecom_directory(), wecom_api(), deps.audit())
    logger.info("wecom change applied", extra={"change_type": change.change_type, "outcome": outcome})
    return outcome


# 18:30 UTC is 02:30 in Asia/Shanghai: after the day's changes, before anyone's morning report.
@area.blueprint.schedule(Cron(30, 18, "*", "*", "?", "*"))
def sync_wecom_directory(event: CloudWatchEvent) -> dict[str, Any]:
    """Reconcile the directory with WeCom's (departments, people, leavers); logs counts only."""
    report = sync_directory(wecom_api(), wecom_directory(), deps.audit()).as_dict()
    logger.info("wecom directory sync", extra={"sync": report})
    return report
