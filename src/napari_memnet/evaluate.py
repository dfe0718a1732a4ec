"""Benchmark evaluation with the MemNet paper's protocol (per task).

* ``denoise``: gray image (colour sets are made gray with MATLAB ``rgb2gray``
  weights, rounded to uint8) plus white Gaussian noise of std sigma (0..255
  scale), drawn from a generator seeded per image; neither the noisy input nor
  the output is clipped or rounded; PSNR/SSIM on the whole image.
* ``sr``: Y channel of MATLAB ``rgb2ycbcr`` (uint8, rounded; a gray image is
  taken as Y directly), modcrop to the scale, MATLAB bicubic down then up;
  the network sees the unrounded bicubic image; the output and the bicubic
  baseline are rounded to uint8; ``scale`` pixels are shaved at each border.
* ``deblock``: gray/Y image (uint8) compressed with libjpeg at quality q; the
  output is stored as uint8 (clipped, rounded, like ``im2uint8``); PSNR/SSIM
  on the whole image.
* ``deblur`` (ours, docs/evaluation.md): gray image (as for ``denoise``) blurred by
  a Gaussian PSF of sigma = the level in pixels (``core.blur``, symmetric
  borders), plus white Gaussian noise of sigma ``DEBLUR_EVAL_NOISE`` (1 %), drawn
  from the same per-image seeded generator; neither input nor output is
  clipped or rounded; PSNR/SSIM on the whole image.

The baseline is the degraded input itself (noisy image, bicubic upsampling,
decoded JPEG). PSNR uses peak 1 on the 0..1 scale (= 255 on the 8-bit scale);
SSIM is Wang et al. 2004 with the matching dynamic range.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .core.color import rgb_to_gray, rgb_to_y, to_uint8
from .core.degrade import add_noise, bicubic_degrade, blur, jpeg_compress, make_psf, modcrop
from .core.images import IMAGE_SUFFIXES
from .core.metrics import psnr, ssim
from .core.tasks import DEBLUR_EVAL_NOISE, TASKS, get_task
from .restoration.ensemble import check_ensemble, label

__all__ = ["TASK_DEFAULTS", "IMAGE_SUFFIXES", "evaluate", "list_images", "load_plane",
           "parse_levels", "default_model_name", "RECORD_KEYS", "json_safe", "records_to_json"]

# the defaults per task, read from the task registry
TASK_DEFAULTS = {name: {"datasets": task.eval_datasets, "levels": task.eval_levels} for name, task in TASKS.items()}
RECORD_KEYS = ("task", "dataset", "level", "model", "psnr", "ssim", "baseline_psnr", "baseline_ssim", "images")

RestoreFn = Callable[[np.ndarray], np.ndarray]


def _check_task(task: str) -> str:
    return get_task(task).name


def parse_levels(task: str, levels) -> tuple:
    """Validate the degradation levels of ``task``: noise sigmas (> 0, 0..255
    scale), SR scales (integers >= 2), JPEG qualities (integers 1..100) or PSF
    widths (pixels, > 0 and <= 10).
    ``levels`` may be a sequence or a comma-separated string; None -> defaults."""
    _check_task(task)
    if levels is None:
        return TASK_DEFAULTS[task]["levels"]
    if isinstance(levels, str):
        items = [t.strip() for t in levels.split(",") if t.strip()]
    elif isinstance(levels, (int, float)):
        items = [levels]
    else:
        items = list(levels)
    if not items:
        raise ValueError(f"no levels given for task {task!r}")
    out = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"level {item!r} of task {task!r} is not a number") from None
        if task == "denoise":
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"noise sigma must be a positive number (0..255 scale), got {item!r}")
            out.append(int(value) if value.is_integer() else value)
        elif task == "deblur":
            if not math.isfinite(value) or not 0 < value <= 10:
                raise ValueError(f"PSF width must be a number of pixels in (0, 10], got {item!r}")
            out.append(int(value) if value.is_integer() else value)
        elif task == "sr":
            if not value.is_integer() or value < 2:
                raise ValueError(f"SR scale must be an integer >= 2, got {item!r}")
            out.append(int(value))
        else:
            if not value.is_integer() or not 1 <= value <= 100:
                raise ValueError(f"JPEG quality must be an integer 1..100, got {item!r}")
            out.append(int(value))
    return tuple(out)


def _parse_datasets(task: str, datasets) -> tuple[str, ...]:
    if datasets is None:
        return TASK_DEFAULTS[task]["datasets"]
    if isinstance(datasets, str):
        datasets = [t.strip() for t in datasets.split(",") if t.strip()]
    names = tuple(datasets)
    if not names:
        raise ValueError("no datasets given")
    return names


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a dataset folder, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_plane(path: str | Path, task: str) -> np.ndarray:
    """One test image as the uint8 2-D plane the protocol of ``task`` uses.

    Gray images are used as they are. Colour images become gray with MATLAB
    ``rgb2gray`` for ``denoise`` and ``deblur`` and the Y of MATLAB ``rgb2ycbcr`` for ``sr`` and
    ``deblock`` (both rounded to uint8). Only 8-bit images are accepted."""
    from PIL import Image

    _check_task(task)
    with Image.open(path) as im:
        if im.mode in ("L", "RGB"):
            arr = np.asarray(im)
        elif im.mode in ("P", "RGBA", "LA", "CMYK", "YCbCr"):
            arr = np.asarray(im.convert("L" if im.mode == "LA" else "RGB"))
        else:
            raise ValueError(f"{path}: expected an 8-bit gray or RGB image, got PIL mode {im.mode!r}")
    if arr.ndim == 2:
        return arr.copy()
    return rgb_to_gray(arr) if task in ("denoise", "deblur") else rgb_to_y(arr)


def _noise_seed(seed: int, dataset: str, name: str) -> np.random.Generator:
    """The per-image generator: the same noise pattern for an image whatever
    the order of evaluation, scaled by each sigma."""
    key = zlib.crc32(f"{dataset}/{name}".encode("utf-8"))
    return np.random.default_rng([int(seed), key])


def _prepare(task: str, gt: np.ndarray, level, rng_factory) -> tuple:
    """(target, network input, baseline, shave, quantise_output); float64 0..1."""
    if task == "denoise":
        clean = gt.astype(np.float64) / 255.0
        noisy = add_noise(clean, level, rng=rng_factory())
        return clean, noisy, noisy, 0, False
    if task == "deblur":
        clean = gt.astype(np.float64) / 255.0
        blurred = add_noise(blur(clean, make_psf("gaussian", level)), DEBLUR_EVAL_NOISE, rng=rng_factory())
        return clean, blurred, blurred, 0, False
    if task == "sr":
        hr_u8 = modcrop(gt, level)
        hr = hr_u8.astype(np.float64) / 255.0
        up = bicubic_degrade(hr, level)
        return hr, up, to_uint8(up) / 255.0, level, True
    decoded = jpeg_compress(gt, level)
    return gt.astype(np.float64) / 255.0, decoded / 255.0, decoded / 255.0, 0, True


def default_model_name(task: str, device=None) -> str | None:
    """The default model of ``task`` on ``device`` (``models.defaults``) if it is installed, else None."""
    from .models.files import ModelFileError, find_model
    from .models.files import default_model_name as rule

    _check_task(task)
    try:
        return find_model(rule(task, device)).name
    except ModelFileError:
        return None


def _model_restore_fn(model, task: str, device: str, ensemble: int = 1) -> tuple[RestoreFn, str]:
    """(restore function, model name) for ``model`` on ``device``.

    The ``restoration.engine.Engine`` (model loaded, BatchNorm folded, moved to the
    device) is built here ONCE and reused for every image and level, rather
    than once per ``restore_plane`` call; the function exposes it as
    ``.engine``."""
    from .models.files import load_model

    loaded = load_model(model, task=task)
    if loaded.task and loaded.task != task:
        raise ValueError(f"model {loaded.name!r} was made for task {loaded.task!r}, not {task!r}")
    if loaded.in_channels != 1:
        raise ValueError(f"model {loaded.name!r} takes {loaded.in_channels} channels; "
                         "evaluation needs a gray (1-channel) model")
    from .restoration.engine import Engine  # lazy: torch and the inference engine
    from .restoration.eager import restore_plane

    engine = Engine(loaded, device=device, ensemble=ensemble)

    def run(plane: np.ndarray) -> np.ndarray:
        return restore_plane(engine, plane)

    run.engine = engine
    return run, label(loaded.name, engine.ensemble)


def json_safe(value):
    """``value`` with every non-finite float (inf, -inf, nan) replaced by None,
    recursively through dicts, lists and tuples (tuples become lists), so that
    strict JSON can hold it. A PSNR is inf when the output equals the target."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def records_to_json(records, *, indent: int | None = 2) -> str:
    """Evaluation records as strict JSON text (RFC 8259: no ``Infinity`` or
    ``NaN``): non-finite numbers are written as ``null`` (``json_safe``)."""
    return json.dumps(json_safe(records), indent=indent, allow_nan=False)


def evaluate(task: str, data_dir: str | Path, datasets: Sequence[str] | str | None = None, levels=None,
             model=None, *, device: str = "auto", seed: int = 0, restore_fn: RestoreFn | None = None,
             max_images: int | None = None, progress: Callable[[dict], None] | None = None,
             ensemble: int = 1) -> list[dict]:
    """Evaluate a model (or only the degraded-input baseline) on benchmark sets.

    ``data_dir`` holds one sub-folder per dataset (e.g. ``.../data/test``);
    ``datasets`` and ``levels`` default to the task's (``TASK_DEFAULTS``).
    ``model``: None for the baseline only, else a model name, a path or a
    loaded model, run with ``napari_memnet.restoration.eager.restore_plane`` on
    ``device`` through one ``restoration.engine.Engine`` built once for all images and
    levels. ``restore_fn`` instead runs any function mapping a float32
    0..1 plane to a plane of the same shape. ``max_images`` keeps the first N
    images of each set (for quick checks). ``progress`` receives each record
    as soon as it is done. ``ensemble`` (1..8, with ``model``) averages the model over
    that many dihedral transforms (``restoration.ensemble``); the records' model
    name says so ("NAME (x8 self-ensemble)").

    Returns one record per (dataset, level) with the keys ``RECORD_KEYS``;
    ``psnr``/``ssim`` are None when no model runs. A PSNR is ``math.inf`` when
    an image is restored exactly (so is the mean); ``records_to_json`` writes
    it as null."""
    _check_task(task)
    level_list = parse_levels(task, levels)
    names = _parse_datasets(task, datasets)
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist (expected a folder of dataset sub-folders)")
    missing = [n for n in names if not (root / n).is_dir()]
    if missing:
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise ValueError(f"dataset(s) {missing} not found in {root}; available: {present}")
    if max_images is not None and (isinstance(max_images, bool) or int(max_images) < 1):
        raise ValueError(f"max_images must be a positive integer, got {max_images!r}")
    seed = int(seed)
    if check_ensemble(ensemble) != 1 and (restore_fn is not None or model is None):
        raise ValueError(f"ensemble={ensemble!r} needs a model to run (model=NAME|PATH, no restore_fn)")

    model_name = None
    if restore_fn is not None:
        model_name = model if isinstance(model, str) else getattr(restore_fn, "__name__", "custom")
    elif model is not None:
        restore_fn, model_name = _model_restore_fn(model, task, device, ensemble)

    records = []
    for dataset in names:
        files = list_images(root / dataset)
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root / dataset}")
        if max_images is not None:
            files = files[: int(max_images)]
        planes = [(f.name, load_plane(f, task)) for f in files]
        for level in level_list:
            record = _evaluate_level(task, dataset, level, planes, restore_fn, model_name, seed)
            records.append(record)
            if progress is not None:
                progress(record)
    return records


def _evaluate_level(task, dataset, level, planes, restore_fn, model_name, seed) -> dict:
    scores, base_scores = [], []
    for name, gt in planes:
        target, net_in, baseline, shave, quantise = _prepare(
            task, gt, level, lambda name=name: _noise_seed(seed, dataset, name))
        if min(target.shape) - 2 * shave < 11:
            raise ValueError(f"{dataset}/{name}: image {target.shape} too small for SSIM after a {shave}-pixel shave")
        base_scores.append((psnr(baseline, target, shave=shave), ssim(baseline, target, shave=shave)))
        if restore_fn is not None:
            out = np.asarray(restore_fn(net_in.astype(np.float32)))
            if out.shape != target.shape:
                raise ValueError(f"{dataset}/{name}: the model returned shape {out.shape}, expected {target.shape}")
            out = out.astype(np.float64)
            if quantise:
                out = to_uint8(out) / 255.0
            scores.append((psnr(out, target, shave=shave), ssim(out, target, shave=shave)))
    mean = lambda pairs, i: float(np.mean([p[i] for p in pairs]))  # noqa: E731
    return {
        "task": task,
        "dataset": dataset,
        "level": level,
        "model": model_name,
        "psnr": mean(scores, 0) if scores else None,
        "ssim": mean(scores, 1) if scores else None,
        "baseline_psnr": mean(base_scores, 0),
        "baseline_ssim": mean(base_scores, 1),
        "images": len(planes),
    }
