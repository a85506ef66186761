"""Progress lines on stderr (stdout stays clean for --json)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Rate-limited one-line progress: `Progress("index").update(files=3, clips=40, fps=120.5)`."""

    def __init__(self, label: str, every_s: float = 1.0, stream=None):
        self.label = label
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self._last = 0.0

    def update(self, force: bool = False, **fields) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        parts = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        print(f"[{self.label}] {parts}", file=self.stream, flush=True)

    def done(self, **fields) -> None:
        self.update(force=True, **fields)


def _fmt(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
