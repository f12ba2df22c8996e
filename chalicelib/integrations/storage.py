"""Attachments in S3: presigned uploads and checks of what was uploaded.

The H5 uploads straight to S3 with a presigned PUT (the file never passes through Lambda, whose
request body is limited to 6 MB); the API only hands out the URL and later checks the object.
The client is built once, on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


@functools.cache
def s3_client() -> Any:
    # Signature v4 with virtual-host addressing is what presigned PUTs need in every region.
    return boto3.client("s3", config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"},
                                            signature_version="s3v4"))


@dataclass(frozen=True)
class StoredObject:
    size: int
    content_type: str


PUT_HEADERS = ("Content-Type", "x-amz-tagging", "If-None-Match")  # what a presigned PUT must send


class StorageUnavailable(Exception):
    """S3 refused or did not answer (throttled, down, denied); names only the failure."""


def presign_put(bucket: str, key: str, content_type: str, size: int, expires_in: int,
                tagging: str) -> tuple[str, dict[str, str]]:
    """A URL that accepts one PUT of ``size`` bytes of ``content_type`` at ``key``, tagged
    ``tagging`` (``k=v``), and the headers that PUT must send.

    Content-Type, Content-Length, ``x-amz-tagging`` and ``If-None-Match: *`` are signed: an upload
    with another type, length or tag is refused by S3 itself, and so is a second PUT to the key
    (412), which would otherwise replace a filed file and set it back to pending.
    """
    url = s3_client().generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": key, "ContentType": content_type, "ContentLength": size,
                "Tagging": tagging, "IfNoneMatch": "*"},
        ExpiresIn=expires_in,
    )
    return url, dict(zip(PUT_HEADERS, (content_type, tagging, "*"), strict=True))


def set_tag(bucket: str, key: str, name: str, value: str) -> None:
    """Replace the object's tags with ``name=value``.

    Raises:
        StorageUnavailable: S3 refused or did not answer.
    """
    try:
        s3_client().put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": name, "Value": value}]})
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else type(exc).__name__
        raise StorageUnavailable(code) from exc


def presign_get(bucket: str, key: str, expires_in: int) -> str:
    """A short-lived URL to download ``key`` (as an attachment, so a browser does not render it inline)."""
    return s3_client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key, "ResponseContentDisposition": "attachment"},
        ExpiresIn=expires_in,
    )


def stat(bucket: str, key: str) -> StoredObject | None:
    """Size and type of an uploaded object, or ``None`` when nothing was uploaded there."""
    try:
        head = s3_client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return StoredObject(size=int(head["ContentLength"]), content_type=head.get("ContentType", ""))
