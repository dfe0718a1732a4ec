"""What a restoration reports while it runs: progress per tile or block, the
final result, and cancellation (checked between tiles and between blocks)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class Cancelled(Exception):
    """Raised when ``cancel`` asks to stop; no partial result is returned."""


@dataclass(frozen=True)
class TileProgress:
    """One finished tile (or lazy block): ``done`` of ``total``, seconds elapsed and the ETA."""

    done: int
    total: int
    elapsed_s: float
    eta_s: float | None


@dataclass
class RestoreResult:
    """The final item of ``restore_iter``."""

    data: np.ndarray = field(repr=False)
    model_name: str
    device: str
    precision: str
    tile_size: int
    seconds: float
    task: str | None = None
    scale: int = 1
    axes: str = "YX"
    ensemble: int = 1  # dihedral transforms averaged (restoration.ensemble; 1 = the plain network)


def is_cancelled(cancel) -> bool:
    """``cancel`` is None, a ``threading.Event`` or a callable returning True to stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def check_cancel(cancel, what: str = "restoration cancelled") -> None:
    """Raise ``Cancelled`` when ``cancel`` asks to stop."""
    if is_cancelled(cancel):
        raise Cancelled(what)


def check_callbacks(progress, cancel) -> None:
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be a callable progress(done, total) or None, got {progress!r}")
    if cancel is not None and not (hasattr(cancel, "is_set") or callable(cancel)):
        raise ValueError(f"cancel must be a callable returning bool, a threading.Event or None, got {cancel!r}")
