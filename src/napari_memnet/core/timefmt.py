"""Durations as text, for the terminal (clock style) and the widgets (words)."""

from __future__ import annotations

import math


def format_seconds(seconds: float | None, style: str = "clock") -> str:
    """``style="clock"``: ``"1:02:03"`` / ``"02:03"``, ``"--:--"`` when unknown (progress bars, logs);
    ``style="words"``: ``"0.4 s"``, ``"12 s"``, ``"3 min 05 s"``, ``"?"`` when unknown (the widgets)."""
    known = seconds is not None and math.isfinite(seconds) and seconds >= 0
    if style == "words":
        if not known:
            return "?"
        if seconds < 10:
            return f"{seconds:.1f} s"
        if seconds < 60:
            return f"{seconds:.0f} s"
        minutes, rest = divmod(int(round(seconds)), 60)
        return f"{minutes} min {rest:02d} s"
    if not known:
        return "--:--"
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
