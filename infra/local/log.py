"""The local stack's own console lines (the app logs JSON through Powertools separately)."""

import sys
from datetime import datetime


def log(message: str) -> None:
    print(f"[local {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
