"""What the door-sync consumer asks of a door gateway: commands, the gateway contract, and the two
ways a gateway can fail. Pure; the adapters are in :mod:`chalicelib.integrations.door_gateway`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

MAX_PASS_ID_LENGTH = 32  # Hikvision's employeeNo holds at most 32 characters


class GatewayUnavailable(Exception):
    """The gateway could not be reached or cannot serve now; retrying later may succeed.

    ``status`` is the HTTP status, or None when there was no answer.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GatewayRejected(Exception):
    """The gateway refused the command for good (bad request, bad credentials, device error).

    ``status`` is the HTTP status, or None when the command was refused before sending.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DoorCommand:
    """Grant or revoke one pass on the door system.

    ``version`` increases with every change to the pass; gateways ignore a version they have
    already applied (or an older one), so redelivered or reordered messages do no harm.
    ``valid_from`` / ``valid_to`` must be timezone-aware. ``credential_number`` is an 18-character
    ID number or a campus-card number: never log it (it is left out of the repr).

    Raises:
        ValueError: from the constructor, for an unknown ``op``, an empty or over-long
            ``pass_id`` or a naive datetime (the message never repeats the credential).
    """

    op: Literal["grant", "revoke"]
    pass_id: str
    version: int
    name: str
    credential_kind: Literal["id_card", "campus_card"]
    credential_number: str = field(repr=False)
    gates: tuple[str, ...]
    valid_from: datetime
    valid_to: datetime

    def __post_init__(self) -> None:
        if self.op not in ("grant", "revoke"):
            raise ValueError(f"op must be grant or revoke, not {self.op!r}")
        if not 1 <= len(self.pass_id) <= MAX_PASS_ID_LENGTH:
            raise ValueError(f"pass_id must be 1 to {MAX_PASS_ID_LENGTH} characters")
        if self.valid_from.utcoffset() is None or self.valid_to.utcoffset() is None:
            raise ValueError("valid_from and valid_to must be timezone-aware")

    @property
    def idempotency_key(self) -> str:
        """``<pass_id>:v<version>:<op>``: the same command always gets the same key."""
        return f"{self.pass_id}:v{self.version}:{self.op}"


class DoorGateway(Protocol):
    """Applies door commands. ``apply`` returns when the door system has the command.

    Raises:
        GatewayUnavailable: retry later.
        GatewayRejected: retrying cannot help.
    """

    def apply(self, command: DoorCommand) -> None: ...
