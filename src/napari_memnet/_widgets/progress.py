"""Text for the Restore widget's progress line (pure functions, no Qt)."""

from __future__ import annotations

import math


def format_seconds(seconds: float | None) -> str:
    """``"0.4 s"``, ``"12 s"``, ``"3 min 05 s"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


def progress_text(done: int, total: int, elapsed_s: float | None, eta_s: float | None) -> str:
    """``"tile 3/16 · 1.2 s elapsed · ETA 5.1 s"``."""
    return (f"tile {done}/{total} \u00b7 {format_seconds(elapsed_s)} elapsed "
            f"\u00b7 ETA {format_seconds(eta_s if done < total else 0.0)}")
