"""Identity numbers and masking: GB 11643 resident ID numbers, mainland mobile numbers.

Masked forms are what logs, lists and profiles show; the full values never leave the directory
except to the person themselves and, for ID numbers, to the door gateway.
"""

from __future__ import annotations

import re
from datetime import date

_ID_PATTERN = re.compile(r"^\d{17}[\dX]$")
_ID_WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]
_ID_CHECK = "10X98765432"
_MOBILE_PATTERN = re.compile(r"^1[3-9]\d{9}$")


class InvalidIdentity(ValueError):
    """The value is not a well-formed identity number; the message says why (without the value)."""


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits (ISO 7064 MOD 11-2)."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS)) % 11]


def normalise_id_number(value: str) -> str:
    """Validate an 18-character resident ID number and return it upper-cased.

    Checks the format, the birth date (a real date, not in the future) and the check character.

    Raises:
        InvalidIdentity: with a reason that does not repeat the number.
    """
    candidate = value.strip().upper()
    if not _ID_PATTERN.match(candidate):
        raise InvalidIdentity("must be 17 digits followed by a digit or X")
    try:
        born = date(int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14]))
    except ValueError:
        raise InvalidIdentity("contains an impossible birth date") from None
    if born > date.today() or born.year < 1900:
        raise InvalidIdentity("contains an impossible birth date")
    if id_check_char(candidate[:17]) != candidate[17]:
        raise InvalidIdentity("check character does not match (GB 11643)")
    return candidate


def normalise_mobile(value: str) -> str:
    """Validate a mainland mobile number (11 digits starting 13-19), optional +86 prefix."""
    candidate = re.sub(r"[\s-]", "", value)
    candidate = candidate.removeprefix("+86")
    if not _MOBILE_PATTERN.match(candidate):
        raise InvalidIdentity("must be an 11-digit mainland mobile number")
    return candidate


def mask_id_number(value: str) -> str:
    """``370102199001011234`` -> ``370102********1234`` (region kept, birth date hidden)."""
    if len(value) < 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_mobile(value: str) -> str:
    """``13800138000`` -> ``138****8000``."""
    if len(value) < 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]
