"""What must never be in a log: ID-card numbers, mobile numbers, tokens, secrets, health values.

:func:`leaks` scans a log's text and names each kind found (with where), never echoing more of a
value than its first characters. The e2e stack checks its whole log with it when it stops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from chalicelib.domain.identity import id_check_char

_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])([1-9][0-9]{16})([0-9Xx])(?![0-9A-Za-z])")
# Bounded by lower-case hex too: request ids, nonces and signatures are lower-case hex, and a run of
# 11 digits inside one (about one signature in a hundred has such a run) is not a phone number. Any
# other neighbour counts as a boundary: "tel13912345678", "phone%3D13912345678" are found.
_MOBILE = re.compile(r"(?<![0-9a-f])1[3-9][0-9]{9}(?![0-9a-f])")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
# The daily report's answers, by field name (a log line naming one carries health data).
_HEALTH_KEYS = re.compile(r'"(temperature|symptoms|symptom_note|health_code|close_contact|risk_area|quarantined|'
                          r'quarantine_place|case_note|reasons)"\s*:')


def leaks(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """Each sensitive value found in ``text``, as ``kind at line N: abc...`` (empty: clean)."""
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in _ID_NUMBER.finditer(line):
            if id_check_char(match.group(1)) == match.group(2).upper():
                found.append(f"ID-card number at line {number}: {match.group(0)[:4]}...")
        found += [f"mobile number at line {number}: {m.group(0)[:3]}..." for m in _MOBILE.finditer(line)]
        found += [f"session token at line {number}: {m.group(0)[:6]}..." for m in _JWT.finditer(line)]
        found += [f"health answer {m.group(1)!r} at line {number}" for m in _HEALTH_KEYS.finditer(line)]
        found += [f"secret at line {number}: {s[:3]}..." for s in secrets if len(s) >= 8 and s in line]
    return found
