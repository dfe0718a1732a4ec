"""The task registry: the one list of restoration tasks and everything that
differs between them. The CLI choices, the widgets, the trainer, the
evaluation and the model files all read it.

Each ``Task`` names its label (shown in the widgets), the suffix of a result
layer, its bundled default model, what its degradation level is called
(noise sigma, SR scale, JPEG quality, PSF width) and the levels used by default for
training, validation, the Train widget and evaluation.

``deblur``'s bundled model is the small MHNet ``mhnet-deblur`` (docs/results.md).
Its levels are PSF widths in pixels (``core.blur``: the per-axis standard deviation
of the PSF, i.e. a Gaussian's sigma); evaluation blurs with a Gaussian PSF of that
sigma and adds ``DEBLUR_EVAL_NOISE`` (1 % of the range) of white noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SR_SCALES = (2, 3, 4)
DEBLUR_EVAL_NOISE = 2.55  # noise sigma (0..255 scale, 1 %) added to the blurred evaluation images
DEBLUR_TRAIN_NOISE = (0.0, 5.1)  # training: sensor-noise sigma drawn uniformly in this range (0..2 %)


@dataclass(frozen=True)
class Task:
    name: str
    label: str  # widget label
    result_suffix: str  # "<layer> [<suffix>]"; "{scale}" is filled in for SR
    default_model: str | None  # the bundled model used when none is named (None: none bundled yet)
    level_name: str  # what a degradation level is: "sigma", "scale", "quality", "width"
    card_levels_key: str  # the model card's record of the training levels
    train_levels: tuple  # training default: a range (lo, hi) or a set of scales
    paper_levels: tuple  # the paper's test levels (validation picks those inside the training range)
    widget_levels: str  # the Train widget's default "levels" text
    widget_levels_help: str
    eval_datasets: tuple  # ``memnet eval`` defaults
    eval_levels: tuple
    # the benchmark that ranks bundled models for the default-model rule (models/defaults.py):
    # (dataset, levels) of ``memnet eval``; the card's "selection" PSNR is the mean over the levels
    selection: tuple = ()


TASKS: dict[str, Task] = {
    "denoise": Task("denoise", "denoise", "denoised", "memnet-denoise", "sigma", "sigma_range",
                    (0.0, 75.0), (15, 25, 50, 70), "5, 50", "noise sigma range lo, hi (0..255 scale)",
                    ("Set12", "BSD68"), (15, 25, 50), selection=("Set12", (15, 25, 50))),
    "sr": Task("sr", "super-resolution", "SR x{scale}", "memnet-sr", "scale", "scales",
               SR_SCALES, SR_SCALES, "2, 3, 4", "scales, e.g. 2, 3, 4",
               ("Set5", "Set14", "BSD100", "Urban100_Y"), SR_SCALES, selection=("Set5", SR_SCALES)),
    "deblock": Task("deblock", "JPEG deblocking", "deblocked", "memnet-deblock", "quality", "jpeg_quality_range",
                    (5, 50), (10, 20, 30, 40), "10, 40", "JPEG quality range lo, hi (1..100)",
                    ("Classic5", "LIVE1"), (10, 20, 30, 40), selection=("Classic5", (10, 20))),
    "deblur": Task("deblur", "deblurring", "deblurred", "mhnet-deblur", "width", "psf_width_range",
                   (0.5, 3.5), (1, 2, 3), "0.5, 3.5", "PSF width range lo, hi (pixels: Gaussian sigma, disk radius / 2)",
                   ("Set12", "BSD68", "Classic5"), (1, 2, 3), selection=("Set12", (2, 3))),
}
TASK_NAMES = tuple(TASKS)
# The bundled model each task uses when none is named (None: no bundled model for the task yet).
DEFAULT_MODELS = {name: task.default_model for name, task in TASKS.items()}


def get_task(name) -> Task:
    """The ``Task`` called ``name``, or a ValueError listing the tasks."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; expected one of {TASK_NAMES}") from None


def check_task(task, scale) -> tuple[str, int]:
    """(task, integer scale); scale is 1 unless the task is 'sr'."""
    get_task(task)
    if task == "sr":
        if scale is None:
            raise ValueError(f"task 'sr' needs a scale, one of {SR_SCALES}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
                or float(scale) not in SR_SCALES:
            raise ValueError(f"unsupported super-resolution scale {scale!r}; expected one of {SR_SCALES}")
        return task, int(scale)
    if scale not in (None, 1):
        raise ValueError(f"scale applies only to task 'sr' (got scale={scale!r} for task {task!r})")
    return task, 1
