"""Progress of long commands on stderr (stdout stays clean for --json), and the CLI's log lines.

    progress = Progress("index build", quiet=args.quiet)      # the CLI makes one; library code takes it
    progress.update(files=3, of=10, clips=40)                  # first field counts toward `of`
    frames = progress.child("frames")                          # a nested bar: frames within one file
    frames.update(frames=1200, of=9000)
    frames.close()
    progress.done(files=10, of=10, clips=130)

On a terminal each Progress is a tqdm bar with rate and ETA (a child is a second bar under its
parent). Anywhere else (stderr sent to a file or a pipe) it prints plain lines without control codes,
at most one a second: `[index build] files=3/10 clips=40 eta=0:12`. `quiet=True` prints nothing.

Library functions take `progress=None` and then report nothing; their messages go through `logging`
(logger "storyreel"), which `setup_cli_logging` routes to stderr as `storyreel: MESSAGE` lines.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref

_OPEN_BARS: weakref.WeakSet = weakref.WeakSet()  # Progress objects with a tqdm bar on screen


class Progress:
    """One long task's progress: a tqdm bar on a terminal, plain rate-limited lines elsewhere."""

    def __init__(self, label: str, *, quiet: bool = False, every_s: float = 1.0, stream=None,
                 bar: bool | None = None, _position: int = 0):
        self.label = label
        self.quiet = quiet
        self.every_s = every_s
        self._stream = stream  # None: sys.stderr, looked up when writing (tests redirect it)
        self._bar_mode = bar
        self._position = _position
        self._bar = None
        self._last = 0.0
        self._lock = threading.Lock()
        self._count_started: tuple[float, int] | None = None  # (time, count) when the current total began
        self._total = None

    @property
    def stream(self):
        return self._stream or sys.stderr

    @property
    def on_terminal(self) -> bool:
        if self._bar_mode is not None:
            return self._bar_mode
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def child(self, label: str) -> Progress:
        """A nested progress (e.g. frames within the current file): a second bar under this one."""
        return Progress(f"{self.label} > {label}", quiet=self.quiet, every_s=self.every_s, stream=self._stream,
                        bar=self._bar_mode, _position=self._position + 1)

    def update(self, force: bool = False, of: int | None = None, **fields) -> None:
        """Report `fields`; with `of`, the first field is a count out of `of` (position and ETA of the bar).

        Thread-safe (decode threads may report). Lines are rate-limited to one per `every_s` unless `force`.
        """
        if self.quiet:
            return
        count_name = next(iter(fields), None) if of is not None else None
        count = int(fields.pop(count_name)) if count_name is not None else None
        with self._lock:
            if self.on_terminal:
                self._update_bar(count_name, count, of, fields)
            else:
                self._update_line(count_name, count, of, fields, force)

    def done(self, **fields) -> None:
        """The final report (always printed, unless quiet), then the bar closes."""
        self.update(force=True, **fields)
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            _OPEN_BARS.discard(self)

    # -- terminal: tqdm ------------------------------------------------------------------------------

    def _update_bar(self, count_name, count, total, fields) -> None:
        from tqdm import tqdm

        if self._bar is None:
            # A terminal that reports no size (a pty opened without one, e.g. under `script`) would make tqdm
            # hide every bar: give it a usual size instead.
            columns, lines = _terminal_size(self.stream)
            sized = {"dynamic_ncols": True} if columns and lines else {"ncols": 100, "nrows": 24}
            self._bar = tqdm(total=total, desc=self.label, unit=count_name or "it", file=self.stream,
                             position=self._position, leave=self._position == 0, mininterval=0.2, **sized)
            _OPEN_BARS.add(self)
        bar = self._bar
        if count is not None:
            if total != bar.total or count < bar.n:  # a new total (next file, next plot): restart the clock
                bar.reset(total=total)
                bar.unit = count_name
            if fields:
                bar.set_postfix({k: _fmt(v) for k, v in fields.items()}, refresh=False)
            bar.update(count - bar.n)
            if total is not None and count >= total:
                bar.refresh()  # the last update may fall inside tqdm's mininterval: show the finished state
        elif fields:
            bar.set_postfix({k: _fmt(v) for k, v in fields.items()})

    # -- elsewhere: plain lines ----------------------------------------------------------------------

    def _update_line(self, count_name, count, total, fields, force) -> None:
        now = time.monotonic()
        parts = []
        if count is not None:
            if self._count_started is None or total != self._total or count < self._count_started[1]:
                self._count_started, self._total = (now, count), total
            parts.append(f"{count_name}={count}/{total}")
        parts += [f"{k}={_fmt(v)}" for k, v in fields.items()]
        if count is not None and 0 < count < total:
            started, first = self._count_started
            if count > first and now > started:
                parts.append(f"eta={_duration((total - count) * (now - started) / (count - first))}")
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        print(f"[{self.label}] {' '.join(parts)}", file=self.stream, flush=True)


def close_open_bars() -> None:
    """Close every bar still on screen (nested ones first), so an error line that follows starts on its own line."""
    for progress in sorted(_OPEN_BARS, key=lambda p: -p._position):
        progress.close()


def _terminal_size(stream) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.columns, size.lines


def _fmt(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# -- log lines -------------------------------------------------------------------------------------------

class _StderrHandler(logging.Handler):
    """`storyreel: MESSAGE` on the current sys.stderr; tqdm.write keeps an open bar intact around it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(f"storyreel: {record.getMessage()}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise into the command
            self.handleError(record)


def setup_cli_logging(quiet: bool = False) -> None:
    """Route the "storyreel" logger to stderr: INFO and up, or only warnings and errors with --quiet."""
    logger = logging.getLogger("storyreel")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
