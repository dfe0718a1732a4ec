"""``TrainConfig``: every setting of a training run, JSON/TOML round-trippable.

Levels per task (the degradations trained for):

* ``denoise``: ``levels = [lo, hi]``, noise sigma (0..255 scale) drawn
  uniformly from ``[lo, hi]`` per patch.
* ``sr``: ``levels = [2, 3, 4]``, the set of integer scales, one drawn per patch.
* ``deblock``: ``levels = [lo, hi]``, JPEG quality drawn uniformly (integers)
  from ``[lo, hi]`` per patch.
* ``deblur``: ``levels = [lo, hi]``, PSF width (pixels) drawn uniformly from
  ``[lo, hi]`` per patch, with a Gaussian, defocus-disk or motion PSF
  (``core.blur.draw_psf``) and sensor noise (``core.tasks.DEBLUR_TRAIN_NOISE``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..core.tasks import TASK_NAMES, TASKS
from .multiscale import check_scales, clean_only_problem

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
LOSSES = ("l2", "l1", "charbonnier", "l1-balanced")  # training/losses.py
# self-supervised objectives for noisy images alone (self_supervised.py); the first is the default (measured,
# docs/self-supervised.md)
SELF_SUPERVISED = ("neighbor2neighbor", "blindspot")

DEFAULT_LEVELS = {name: task.train_levels for name, task in TASKS.items()}  # read from the task registry
DEFAULT_ARCH = {"memnet": {"blocks": 6, "recursions": 6, "channels": 64}, "red30": {"layers": 15, "channels": 64},
                "mhnet": {"channels": 16, "depth": 3, "blocks": 1}}
# Adam's from-scratch learning rate per architecture (else 1e-2, measured for MemNet): the
# LayerNorm/attention MHNet starts at the NAFNet family's 1e-3 (not yet measured here)
ADAM_LR = {"mhnet": 1e-3}


FINE_TUNE_LR_FACTOR = 0.01  # default lr when fine-tuning = this x the from-scratch default
# with ``init``: the MemNet settings that grow the base model (more memory blocks / recursions, untied
# recursions: models/grow.py)
GROWABLE = ("blocks", "recursions", "shared_recursions")


@dataclass
class TrainConfig:
    """Settings of one run. ``None`` means "the documented default for this task/optimizer"."""

    task: str = "denoise"
    levels: tuple = ()
    name: str = "memnet-model"
    # network: a fresh one of ``architecture``/``arch`` or a copy of ``init`` (model name or path);
    # ``init`` with ``arch`` blocks/recursions: the base MemNet grown to them (models/grow.py)
    architecture: str = "memnet"
    arch: dict = field(default_factory=dict)
    init: str | None = None
    # data
    clean_dir: str | None = None
    pairs_input_dir: str | None = None
    pairs_target_dir: str | None = None
    noisy_dir: str | None = None  # noisy images alone: self-supervised training (self_supervised.py)
    self_supervised: str | None = None  # its objective, one of SELF_SUPERVISED (None: the first)
    val_dir: str | None = None  # held-out clean images (synthetic data)
    val_pairs_input_dir: str | None = None  # held-out pairs (real-pair data)
    val_pairs_target_dir: str | None = None
    val_count: int = 4  # images held out of the training images when no val_dir is given
    val_fraction: float | None = None  # overrides val_count when set
    val_crop: int = 96  # validation images are centre-cropped to this (0: whole image)
    val_levels: tuple = ()
    # clean training images also used downscaled by each factor below 1, e.g. (1, 0.9, 0.8, 0.7): DnCNN's
    # multi-scale augmentation (multiscale.py); () or (1,): as they are
    scales: tuple = ()
    # optimisation
    steps: int = 1000
    batch_size: int = 16
    patch_size: int = 31
    multi_supervised: bool = True
    loss: str = "l2"  # l2 (the paper's Euclidean loss), l1, charbonnier, l1-balanced (losses.py)
    optimizer: str = "adam"
    lr: float | None = None  # adam 1e-2 (measured fastest, docs/training.md), sgd 0.1; 1/100 of that with init
    lr_min: float = 1e-5
    schedule: str | None = None  # adam: cosine, sgd: step
    lr_step: int | None = None  # step schedule: divide by 10 every lr_step steps (default steps // 3)
    warmup_steps: int = 0
    momentum: float = 0.9
    weight_decay: float | None = None  # adam 0, sgd 1e-4
    clip: float | None = None  # gradient norm clip; adam 1.0, sgd 0.4 (with lr 0.1)
    seed: int = 0
    # execution
    device: str = "auto"
    # auto: bf16 on CUDA, and on a CPU with native bf16 when starting from a model; else fp32 (core.devices)
    precision: str = "auto"
    channels_last: bool | None = None  # None: on (measured faster on the CPU too, docs/training.md)
    compile: bool = False
    threads: int | None = None
    # output
    out_dir: str | None = None  # checkpoints + events.jsonl
    model_dir: str | None = None  # where the final model goes (None: the user model folder)
    checkpoint_every: int = 500
    checkpoint_minutes: float = 10.0  # also a checkpoint after this much wall-clock time since the last one
    minutes: float | None = None  # wall-clock budget of this invocation: stop cleanly after it (resume continues)
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off); the saved model is the EMA
    validate_every: int = 500
    log_every: int = 10  # events.jsonl gets every log_every-th Step event
    # after the last step: BatchNorm running statistics re-estimated over this many training batches
    # (bn_calibration.py; 0: keep the running averages of training). Networks without BatchNorm: nothing.
    recalibrate_batches: int = 20
    # BatchNorm normalises by the running statistics of the base model during training too (and no
    # recalibration): None = on for self-supervised runs from a model (self_supervised.py), else off
    freeze_batchnorm: bool | None = None

    def __post_init__(self):
        self.levels = tuple(self.levels) if self.levels else DEFAULT_LEVELS.get(self.task, ())
        self.val_levels = tuple(self.val_levels) if self.val_levels else ()
        self.scales = tuple(self.scales) if self.scales else ()
        self.arch = dict(self.arch or {})
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        problems = []
        if self.task not in TASKS:
            problems.append(f"task must be one of {TASK_NAMES}, got {self.task!r}")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not (isinstance(self.ema, (int, float)) and 0 <= self.ema < 1):
            problems.append(f"ema must be a decay in [0, 1) (0: off), got {self.ema!r}")
        if self.minutes is not None and not (isinstance(self.minutes, (int, float)) and self.minutes > 0):
            problems.append(f"minutes must be a positive number of minutes (or None), got {self.minutes!r}")
        if not (isinstance(self.checkpoint_minutes, (int, float)) and self.checkpoint_minutes > 0):
            problems.append(f"checkpoint_minutes must be a positive number, got {self.checkpoint_minutes!r}")
        if self.noisy_dir and (self.val_dir or self.clean_dir):
            problems.append("noisy_dir (noisy images alone) takes its validation images from the same folder "
                            "(val_count / val_fraction); it cannot be combined with val_dir or clean_dir")
        if self.loss == "l1-balanced" and (self.noisy_dir or self.self_supervised):
            problems.append("loss l1-balanced weighs whole samples; the self-supervised objectives (noisy_dir) "
                            "compare masked pixels: use l1, l2 or charbonnier with them")
        if self.self_supervised is not None and self.self_supervised not in SELF_SUPERVISED:
            problems.append(f"self_supervised must be one of {SELF_SUPERVISED}, got {self.self_supervised!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for key in ("steps", "batch_size", "patch_size", "checkpoint_every", "validate_every", "log_every"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{key} must be a positive integer, got {value!r}")
        rb = self.recalibrate_batches
        if not isinstance(rb, int) or isinstance(rb, bool) or rb < 0:
            problems.append(f"recalibrate_batches must be an integer >= 0 (0: off), got {rb!r}")
        if isinstance(self.patch_size, int) and self.patch_size < 8:
            problems.append(f"patch_size must be at least 8, got {self.patch_size}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr must be a positive number, got {self.lr!r}")
        if self.clip is not None and not self.clip > 0:
            problems.append(f"clip must be positive (or None for the default), got {self.clip!r}")
        if self.val_fraction is not None and not 0 <= self.val_fraction < 1:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.val_count < 0:
            problems.append(f"val_count must be >= 0, got {self.val_count}")
        if self.init and self.arch and set(self.arch) - set(GROWABLE):
            problems.append(f"init (the base model) fixes the architecture; of the architecture settings only "
                            f"{', '.join(GROWABLE)} may be given with it (to grow a MemNet, models/grow.py), "
                            f"got {sorted(self.arch)}")
        problem = check_scales(self.scales) or (
            clean_only_problem(self.scales, "noisy images or real pairs") if self.noisy_dir or self.pairs_input_dir else None)
        if problem:
            problems.append(problem)
        problems += self._level_problems()
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def _level_problems(self) -> list[str]:
        lv = self.levels
        if self.task == "denoise":
            if len(lv) == 1:
                self.levels = lv = (float(lv[0]), float(lv[0]))
            if len(lv) != 2 or not 0 <= lv[0] <= lv[1] <= 255:
                return [f"denoise levels must be a sigma range 'lo,hi' within 0..255, got {lv!r}"]
            self.levels = (float(lv[0]), float(lv[1]))
        elif self.task == "sr":
            if not lv or any(int(s) != s or not 2 <= s <= 8 for s in lv):
                return [f"sr levels must be integer scales in 2..8 such as '2,3,4', got {lv!r}"]
            self.levels = tuple(sorted({int(s) for s in lv}))
        elif self.task == "deblock":
            if len(lv) == 1:
                self.levels = lv = (lv[0], lv[0])
            if len(lv) != 2 or any(int(q) != q for q in lv) or not 1 <= lv[0] <= lv[1] <= 100:
                return [f"deblock levels must be a JPEG quality range 'lo,hi' within 1..100, got {lv!r}"]
            self.levels = (int(lv[0]), int(lv[1]))
        elif self.task == "deblur":
            if len(lv) == 1:
                self.levels = lv = (float(lv[0]), float(lv[0]))
            if len(lv) != 2 or not 0 < lv[0] <= lv[1] <= 10:
                return [f"deblur levels must be a PSF width range 'lo,hi' in pixels within (0, 10], got {lv!r}"]
            self.levels = (float(lv[0]), float(lv[1]))
        return []

    # ------------------------------------------------------------ resolved defaults
    @property
    def resolved_lr(self) -> float:
        """``lr``, else Adam 1e-2 (``ADAM_LR`` for MHNet) / SGD 0.1 from scratch and a hundredth of that
        when fine-tuning (``init`` set): 1e-2 measurably damages a trained model
        (docs/training.md, "BatchNorm recalibration")."""
        if self.lr is not None:
            return self.lr
        base = ADAM_LR.get(self.architecture, 1e-2) if self.optimizer == "adam" else 0.1
        return base * FINE_TUNE_LR_FACTOR if self.init else base

    @property
    def resolved_schedule(self) -> str:
        return self.schedule or ("cosine" if self.optimizer == "adam" else "step")

    @property
    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.0 if self.optimizer == "adam" else 1e-4

    @property
    def resolved_clip(self) -> float:
        return self.clip if self.clip is not None else (1.0 if self.optimizer == "adam" else 0.4)

    @property
    def resolved_arch(self) -> dict:
        arch = dict(DEFAULT_ARCH.get(self.architecture, {}))
        arch.update(self.arch)
        arch.setdefault("in_channels", 1)
        if self.architecture == "memnet":
            arch.setdefault("multi_supervised", True)
        return arch

    def resolved_val_levels(self) -> tuple:
        if self.val_levels:
            return tuple(self.val_levels)
        if self.task == "sr":
            return tuple(self.levels)
        lo, hi = self.levels
        # validation levels are the paper's test levels that fall inside the training range
        inside = tuple(v for v in TASKS[self.task].paper_levels if lo <= v <= hi)
        if inside:
            return inside
        mid = (lo + hi) / 2
        return (mid,) if self.task in ("denoise", "deblur") else (int(round(mid)),)

    def lr_at(self, step: int) -> float:
        """Learning rate for optimisation step ``step`` (0-based); a pure function of the step."""
        base = self.resolved_lr
        if self.warmup_steps and step < self.warmup_steps:
            return base * (step + 1) / self.warmup_steps
        kind = self.resolved_schedule
        if kind == "constant":
            return base
        if kind == "step":
            every = self.lr_step or max(1, self.steps // 3)
            return base * (0.1 ** (step // every))
        span = max(1, self.steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.lr_min + 0.5 * (base - self.lr_min) * (1 + math.cos(math.pi * t))

    # ----------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["levels"] = list(self.levels)
        d["val_levels"] = list(self.val_levels)
        d["scales"] = list(self.scales)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def load_config(path: str | Path, **overrides) -> TrainConfig:
    """Read a TOML file of ``TrainConfig`` keys (``[arch]`` as a table); ``overrides`` win."""
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: training config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
