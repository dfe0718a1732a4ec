"""Text for the Restore widget's progress line (pure functions, no Qt)."""

from __future__ import annotations

from ..core.timefmt import format_seconds


def progress_text(done: int, total: int, elapsed_s: float | None, eta_s: float | None) -> str:
    """``"tile 3/16 · 1.2 s elapsed · ETA 5.1 s"``."""
    return (f"tile {done}/{total} \u00b7 {format_seconds(elapsed_s, 'words')} elapsed "
            f"\u00b7 ETA {format_seconds(eta_s if done < total else 0.0, 'words')}")
