"""Typed events of a training run.

The trainer is a generator of these; the napari widget, the CLI and scripts
all consume the same stream. Nothing here touches Qt. Every event turns into
a JSON-ready dict with ``to_dict()``, one line of a run's ``events.jsonl``
(``EventLog``)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

EVENTS_NAME = "events.jsonl"  # a run's event log, in its output folder


def _clean(value):
    """JSON-safe copy: non-finite floats become None, tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass
class TrainingEvent:
    """Base class: ``kind`` names the event in JSON."""

    kind = "event"

    def to_dict(self) -> dict:
        return {"event": self.kind, **_clean(asdict(self))}


@dataclass
class Started(TrainingEvent):
    """The run is set up: data checked, model built, maybe resumed."""

    kind = "started"
    step: int  # first step to run (0, or the resumed step)
    total: int
    device: str
    precision: str
    parameters: int
    train_images: int
    val_items: int
    resumed: bool = False


@dataclass
class Step(TrainingEvent):
    """One optimisation step finished."""

    kind = "step"
    step: int  # steps done so far (1-based after the first step)
    total: int
    loss: float  # the optimised loss of this step
    branch_losses: list[float] = field(default_factory=list)  # per memory block (multi-supervised)
    branch_weights: list[float] = field(default_factory=list)  # w_m
    lr: float = 0.0
    patches_per_s: float = 0.0
    eta_s: float = 0.0
    grad_norm: float = 0.0


@dataclass
class Validation(TrainingEvent):
    """PSNR (dB) of the model on the held-out validation items.

    Self-supervised runs (noisy images alone): ``psnr`` is ``-10 log10(mse)`` of the objective against
    the held-out NOISY targets (level ``"self-supervised"``), and ``self_supervised_loss`` its loss."""

    kind = "validation"
    step: int
    psnr: float  # mean over validation items
    baseline_psnr: float  # the degraded input itself
    base_model_psnr: float | None = None  # the model before this run's first step
    per_level: dict = field(default_factory=dict)  # level -> {"psnr":..., "baseline_psnr":...}
    seconds: float = 0.0
    self_supervised_loss: float | None = None  # self-supervised runs only


@dataclass
class CheckpointSaved(TrainingEvent):
    kind = "checkpoint"
    step: int
    path: str
    seconds: float = 0.0


@dataclass
class BestModelSaved(TrainingEvent):
    """A validation beat every earlier one of the run: that model was saved to ``path`` (OUT_DIR/best/)."""

    kind = "best_model"
    step: int
    psnr: float
    path: str


@dataclass
class BatchNormRecalibrated(TrainingEvent):
    """After the last step (or a stop): the BatchNorm running statistics were re-estimated as the
    average over ``batches`` fresh training batches (the saved model has them, the checkpoint not)."""

    kind = "batchnorm_recalibrated"
    step: int
    batches: int
    batch_size: int
    layers: int  # BatchNorm layers recalibrated
    seconds: float = 0.0


@dataclass
class Finished(TrainingEvent):
    """The run ended (all steps done, or stopped on request) and the model was saved."""

    kind = "finished"
    step: int
    total: int
    stopped: bool
    model_name: str
    model_path: str
    psnr: float | None = None
    baseline_psnr: float | None = None
    base_model_psnr: float | None = None
    seconds: float = 0.0


@dataclass
class Failed(TrainingEvent):
    kind = "failed"
    step: int
    error: str  # "ExceptionType: message"


__all__ = ["BatchNormRecalibrated", "BestModelSaved", "CheckpointSaved", "Failed", "Finished", "Started", "Step", "TrainingEvent",
           "Validation"]


class EventLog:
    """Appends events as JSON lines (Step events only every ``every``-th step)."""

    def __init__(self, path: Path | None, every: int = 1, append: bool = True):
        self.every = max(1, int(every))
        self.fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(path, "a" if append else "w", encoding="utf-8")

    def write(self, event: TrainingEvent) -> None:
        if self.fh is None:
            return
        if isinstance(event, Step) and event.step % self.every and event.step != event.total:
            return
        self.fh.write(json.dumps({"time": round(time.time(), 3), **event.to_dict()}) + "\n")
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
