"""The shipped service catalogue: the 48 items of the service hall, as data.

``services.json`` holds one definition per item (see :mod:`chalicelib.domain.forms` for the
format). It is validated the first time it is read; a bad definition fails loudly there, and
``tests/unit/test_catalogue.py`` reads it on every run so it cannot ship broken.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from chalicelib.domain.forms import ServiceDefinition

CATALOGUE_FILE = Path(__file__).with_name("services.json")


@functools.cache
def shipped_definitions() -> dict[str, ServiceDefinition]:
    """The shipped definitions by id.

    Raises:
        ValueError: the file holds an invalid definition or a duplicate id (names which).
    """
    raw = json.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))
    definitions: dict[str, ServiceDefinition] = {}
    for index, item in enumerate(raw):
        try:
            definition = ServiceDefinition.model_validate(item)
        except ValueError as exc:
            raise ValueError(f"services.json item {index} ({item.get('id')!r}): {exc}") from None
        if definition.id in definitions:
            raise ValueError(f"services.json: duplicate id {definition.id!r}")
        definitions[definition.id] = definition
    return definitions
