"""Door-event simulator (``make door-events``): play the door system posting gate passages.

Builds a batch of in/out passages for a few demo people, plus one swipe of an unknown campus card,
and POSTs it to ``<api_url>/webhooks/door/events`` signed the way the door system signs
(``X-Door-Signature``, :mod:`chalicelib.domain.door_signature`). Prints the API's JSON answer.

The API URL defaults to ``api_url`` in the running local stack's state file (``$LOCAL_STACK_STATE``
or ``.local/stack.json``), the secret to the ``local`` stage's ``DOOR_WEBHOOK_SECRET`` in
``.chalice/config.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests

from chalicelib.domain.door_signature import sign

PROJECT_DIR = Path(__file__).resolve().parents[2]
GATES = ("east", "west", "south", "north")
DEFAULT_PEOPLE = "s001,s002,s003,t001,t002"
UNKNOWN_CARD = "99999999"
WEBHOOK_PATH = "/webhooks/door/events"
SECRET_NAME = "DOOR_WEBHOOK_SECRET"
# Gap between two passages of the batch, in milliseconds: a few seconds to two minutes.
_GAP_MS = (2_000, 120_000)


def _iso_ms(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event(gate: str, direction: str, at: datetime, **credential: Any) -> dict[str, Any]:
    return {
        # Random, not from rng: a rerun with the same seed is a new batch, not a redelivery.
        "event_id": f"sim-{uuid.uuid4().hex}",
        "gate": gate,
        "direction": direction,
        "at": _iso_ms(at),
        "credential_kind": "campus_card",
        "card_number": None,
        "id_number": None,
        "userid": None,
        "result": "granted",
        **credential,
    }


def build_events(
    people: list[str], count: int, start: datetime, rng: random.Random, *, gate: str | None = None
) -> list[dict[str, Any]]:
    """A batch of ``count`` passages of ``people`` plus one unknown-card swipe (``count + 1`` events).

    Each person alternates in, out, in... from their first passage; passages are picked at random
    (``rng``) and their times increase from ``start`` (a naive ``start`` is taken as UTC) by a few
    seconds to two minutes each, written in UTC with milliseconds and ``Z``. Demo people swipe their
    campus card (``card_number`` and ``userid`` are the userid) and are granted; the unknown card
    ``99999999`` (no userid) is denied, at a random place in the batch. ``gate`` fixes the gate
    (default: random per event). Event ids are ``sim-<uuid hex>``, new on every call.

    Raises:
        ValueError: no people or a negative count.
    """
    if not people or count < 0:
        raise ValueError("need at least one person and a count >= 0")
    at = start if start.tzinfo is not None else start.replace(tzinfo=timezone.utc)
    unknown_slot = rng.randint(0, count)
    inside: dict[str, bool] = {}
    events = []
    for slot in range(count + 1):
        at += timedelta(milliseconds=rng.randint(*_GAP_MS))
        where = gate or rng.choice(GATES)
        if slot == unknown_slot:
            events.append(_event(where, "in", at, card_number=UNKNOWN_CARD, result="denied"))
            continue
        person = rng.choice(people)
        inside[person] = not inside.get(person, False)
        events.append(_event(where, "in" if inside[person] else "out", at, card_number=person, userid=person))
    return events


def default_api_url(state_file: Path | None = None) -> str | None:
    """``api_url`` from the local stack's state file, or None when there is none."""
    if state_file is None:
        state_file = Path(os.environ.get("LOCAL_STACK_STATE") or PROJECT_DIR / ".local" / "stack.json")
    try:
        url = json.loads(state_file.read_text()).get("api_url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) and url else None


def default_secret(project_dir: Path = PROJECT_DIR) -> str | None:
    """The ``local`` stage's webhook secret in ``.chalice/config.json`` (else the top level's), or None."""
    try:
        config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    stage = config.get("stages", {}).get("local", {}).get("environment_variables", {})
    return stage.get(SECRET_NAME) or config.get("environment_variables", {}).get(SECRET_NAME)


def post_events(api_url: str, secret: str, events: list[dict[str, Any]], timeout: float = 10.0) -> requests.Response:
    """POST ``{"events": events}`` to the door webhook, signed now with ``secret``."""
    body = json.dumps({"events": events}, separators=(",", ":")).encode("utf-8")
    return requests.post(
        f"{api_url.rstrip('/')}{WEBHOOK_PATH}",
        data=body,
        headers={"Content-Type": "application/json", "X-Door-Signature": sign(secret, body, int(time.time()))},
        timeout=timeout,
    )


def main(argv: list[str] | None = None) -> int:
    """Build a batch, post it, print the answer. Returns 0 when the API accepted it (2xx), else 1."""
    parser = argparse.ArgumentParser(prog="door-events", description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", help="the API base URL (default: api_url of the running local stack)")
    parser.add_argument("--secret", help=f"the webhook secret (default: {SECRET_NAME} of the local stage)")
    parser.add_argument("--count", type=int, default=20, help="passages of known people (default 20)")
    parser.add_argument("--people", default=DEFAULT_PEOPLE, help=f"comma-separated userids (default {DEFAULT_PEOPLE})")
    parser.add_argument("--gate", choices=GATES, help="one gate for every event (default: random)")
    parser.add_argument("--seed", type=int, help="seed the choice of people, gates and gaps")
    args = parser.parse_args(argv)

    api_url = args.api_url or default_api_url()
    if not api_url:
        parser.error("no --api-url, and no local stack state file with api_url (start it with `make run`)")
    secret = args.secret or default_secret()
    if not secret:
        parser.error(f"no --secret, and no {SECRET_NAME} in .chalice/config.json")
    people = [userid.strip() for userid in args.people.split(",") if userid.strip()]
    if not people or args.count < 0:
        parser.error("--people needs at least one userid and --count must be >= 0")

    # Recent passages, ending about now (gaps are up to two minutes).
    start = datetime.now(timezone.utc) - timedelta(minutes=2 * args.count)
    events = build_events(people, args.count, start, random.Random(args.seed), gate=args.gate)
    try:
        response = post_events(api_url, secret, events)
    except requests.RequestException as exc:
        print(f"could not reach {api_url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(response.json(), ensure_ascii=False, indent=2))
    except ValueError:
        print(response.text)
    if not response.ok:
        print(f"the API answered HTTP {response.status_code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
