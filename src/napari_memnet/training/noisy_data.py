"""Noisy images alone (no clean reference): the data of self-supervised training.

``prepare_noisy_data`` takes a folder, a list of image paths or a list of
arrays, as ``clean=`` does (``data.py``), and puts each image on 0..1 the way
``restore`` maps its input (uint16 camera counts by their 0.1/99.9th
percentiles), so the model trains on the intensities it will meet. Each image
becomes a ``TrainItem`` whose input IS its target (the same array): the patch
sampler then cuts patches as it cuts real pairs, and the self-supervised
objective (``self_supervised.py``) makes its own inputs and targets from them.
Validation holds out whole images (``val_count`` / ``val_fraction``) or takes
the ``validation`` images given, centre-cropped to ``val_crop``.

Refused by name in ONE ``ValueError`` before any step, as the other sources
are: unreadable files, NaN/inf, images smaller than a training patch, and, of
this source only, constant images (no noise to learn from), noisy images of
different pixel types (from different cameras or pipelines: one model of their
noise cannot fit both; convert them first) and a task other than ``denoise``.
"""

from __future__ import annotations

import os

import numpy as np

from .data import (TrainingData, TrainItem, ValItem, _centre_crop, _check_plane, _report, read_entries,
                   split_validation, to_plane)
from .intensity_maps import RESTORE, check_rule
from .multiscale import clean_only_problem

SOURCE = "noisy"  # TrainingData.source of this data


def load_noisy_planes(source, what: str, problems: list[str], intensity: str = RESTORE, names=None,
                      min_size: int = 8, dtypes: dict | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, 2-D float32 plane on 0..1) of each noisy image; problems collected.
    ``dtypes`` (pixel type -> names) is filled for the one-pixel-type check."""
    out = []
    for name, raw, imap in read_entries(source, what, problems, intensity, names, what.split()[0]):  # noisy[i]
        if dtypes is not None:
            dtypes.setdefault(str(raw.dtype), []).append(name)
        try:
            plane = to_plane(raw, "denoise", imap(raw))
        except ValueError as exc:
            problems.append(f"{what} {name}: {exc}")
            continue
        if not _check_plane(name, plane, min_size, problems):
            continue
        if float(plane.max()) == float(plane.min()):
            problems.append(f"{name}: a constant image (every pixel {raw.flat[0]}): there is no noise to learn from")
            continue
        out.append((name, plane))
    return out


def _mixed_types(dtypes: dict) -> str | None:
    if len(dtypes) < 2:
        return None
    listed = "; ".join(f"{t}: {', '.join(n[:3])}{' ...' if len(n) > 3 else ''}" for t, n in sorted(dtypes.items()))
    return (f"noisy images of {len(dtypes)} pixel types ({listed}): their noise differs (another camera or "
            "pipeline), so one self-supervised model cannot fit them all; train on images of one pixel type")


def prepare_noisy_data(config, noisy, validation=None, min_size: int | None = None, intensity: str = RESTORE,
                       names=None, val_names=None) -> TrainingData:
    """Load and check noisy images (folder, paths or arrays) for self-supervised training; ONE
    ValueError listing every problem. ``validation``: None (hold out ``config.val_count`` /
    ``val_fraction`` images), or noisy images (folder, paths or arrays) held out as given."""
    check_rule(intensity)
    if config.task != "denoise":
        raise ValueError(f"noisy images alone train a denoiser (task 'denoise'), not {config.task!r}: "
                         "give clean images or degraded/clean pairs for that task")
    if noisy is None or (isinstance(noisy, (list, tuple)) and not noisy):
        raise ValueError("no noisy images given (noisy=/--noisy)")
    if problem := clean_only_problem(config.scales, "a noisy image"):
        raise ValueError(problem)
    min_size = min_size or config.patch_size
    problems: list[str] = []
    dtypes: dict = {}
    planes = load_noisy_planes(noisy, "noisy image", problems, intensity, names, min_size, dtypes)
    if validation is not None:
        val_planes = load_noisy_planes(validation, "validation image", problems, intensity, val_names, 8, dtypes)
        train_planes = planes
    else:
        train_planes, val_planes = split_validation(planes, config.val_count, config.val_fraction, config.seed)
    mixed = _mixed_types(dtypes)
    if mixed:
        problems.append(mixed)
    if not problems and not train_planes:
        problems.append("no training images left (all were held out for validation or none were given)")
    if problems:
        raise ValueError(_report(problems))
    val = []
    for name, plane in val_planes:
        crop = _centre_crop(plane, config.val_crop, 4).astype(np.float32)
        val.append(ValItem(name, None, crop, crop))
    desc = (f"{len(planes)} noisy images from {noisy}" if isinstance(noisy, (str, os.PathLike))
            else f"{len(planes)} noisy images")
    return TrainingData("denoise", SOURCE, [TrainItem(n, p, p) for n, p in train_planes], val, desc)
