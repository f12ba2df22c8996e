"""Attachments: who may upload what, and whether a form may reference an upload.

An upload is a slot (key, owner, type, size limit) handed out with a presigned URL; a form field of
type ``attachment`` holds slot keys. A key is accepted on a form only if its slot belongs to the
applicant, the type suits the field and the object really is in the bucket within the size limit.

Every upload arrives tagged ``upload=pending`` (the tag is part of the signed PUT), and the bucket's
lifecycle deletes pending objects after a few days: a file picked on a phone and never filed does
not stay in storage. Before a form holding it is stored, the file is tagged ``upload=kept``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chalicelib.domain.forms import FieldSpec

ALLOWED_TYPES: dict[str, str] = {
    "image/jpeg": "jpg", "image/png": "png", "image/heic": "heic", "application/pdf": "pdf",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
UPLOAD_TAG = "upload"
PENDING, KEPT = "pending", "kept"
PENDING_TAGGING = f"{UPLOAD_TAG}={PENDING}"  # the x-amz-tagging header every upload is signed with
KEY_PATTERN = re.compile(r"^uploads/\d{8}/[0-9a-f]{32}\.[a-z]{3,4}$")


@dataclass(frozen=True)
class Slot:
    owner: str
    content_type: str
    max_bytes: int


class SlotStore(Protocol):
    def owners(self, keys: Sequence[str]) -> dict[str, Any]: ...


def new_key(content_type: str, now: datetime) -> str:
    """An unguessable key that says nothing about the file or its owner."""
    return f"uploads/{now.strftime('%Y%m%d')}/{uuid.uuid4().hex}.{ALLOWED_TYPES[content_type]}"


@dataclass
class AttachmentCheck:
    """``check(owner, field, key)`` -> a reason the key cannot be used, or ``None``."""

    slots: SlotStore
    stat: Callable[[str], Any]  # key -> object with .size, or None when nothing was uploaded
    mark_kept: Callable[[str], None]  # key -> the object is tagged kept (the lifecycle spares it)

    def keep(self, keys: Sequence[str]) -> None:
        """Spare the files of a form about to be stored from the lifecycle's removal of pending
        uploads (idempotent: a retried filing tags them again)."""
        for key in dict.fromkeys(keys):
            self.mark_kept(key)

    def __call__(self, owner: str, spec: FieldSpec, key: str) -> str | None:
        if not KEY_PATTERN.match(key):
            return "not an upload key"
        slot = self.slots.owners([key]).get(key)
        if slot is None or slot.owner != owner:
            return "unknown upload"
        if spec.content_types and slot.content_type not in spec.content_types:
            return f"file type not accepted here (allowed: {', '.join(spec.content_types)})"
        stored = self.stat(key)
        if stored is None:
            return "the file has not been uploaded"
        if stored.size > slot.max_bytes:
            return f"file too large (at most {slot.max_bytes} bytes)"
        return None
