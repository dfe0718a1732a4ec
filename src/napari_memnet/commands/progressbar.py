"""A tiny dependency-free progress bar with an ETA, written to stderr."""

from __future__ import annotations

import sys
import time

from ..core.timefmt import format_seconds


class ProgressBar:
    """``bar.update(done, total)`` redraws ``desc [#####     ] 5/10  50% 00:03<00:03``.

    On a terminal the line is redrawn in place at most every ``interval``
    seconds; on a pipe or file a line is written at most every 10 seconds and
    at the end, so logs stay short."""

    def __init__(self, desc: str = "", total: int = 0, *, stream=None, width: int = 24, interval: float = 0.1,
                 unit: str = ""):
        self.desc = desc
        self.total = int(total)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.unit = unit
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.is_tty else 10.0
        self.start = time.perf_counter()
        self.done = 0
        self._last_draw = -1e9
        self._closed = False

    def text(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        elapsed = now - self.start
        total = max(self.total, 1)
        frac = min(max(self.done / total, 0.0), 1.0)
        filled = int(round(frac * self.width))
        eta = elapsed / self.done * (self.total - self.done) if self.done > 0 else None
        unit = f" {self.unit}" if self.unit else ""
        prefix = f"{self.desc} " if self.desc else ""
        return (f"{prefix}[{'#' * filled}{' ' * (self.width - filled)}] {self.done}/{self.total}{unit} "
                f"{frac * 100:3.0f}% {format_seconds(elapsed)}<{format_seconds(eta)}")

    def update(self, done: int, total: int | None = None) -> None:
        self.done = int(done)
        if total is not None:
            self.total = int(total)
        now = time.perf_counter()
        if self.done >= self.total or now - self._last_draw >= self.interval:
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        if self.is_tty:
            self.stream.write("\r" + self.text(now) + "\x1b[K")
        else:
            self.stream.write(self.text(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Finish the line (once)."""
        if self._closed:
            return
        self._closed = True
        if self.is_tty:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
