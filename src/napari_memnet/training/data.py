"""Training and validation data: images from folders or arrays, checked up front.

Two sources:

* **clean images** (synthetic pairs): each image is degraded on the fly by the
  sampler (``sampler.py``) with the task's degradation;
* **real pairs** ``(degraded, clean)``: two folders matched by file name, or a
  list of array pairs, registered pixel for pixel. For super-resolution the
  degraded image may be the low-resolution one (an integer scale smaller); it
  is bicubic-upsampled (MATLAB ``imresize``) to the clean size as model input.

Intensities become float32 on 0..1 the way ``restore`` maps its input
(``intensity_maps``: 8-bit data / 255, 0..1 floats as they are, anything else,
e.g. uint16, by its 0.1/99.9th percentiles), so a model meets at restore time
the intensities it trained on. For a pair the map is chosen from the DEGRADED
image (what restore will see) and applied to both; a clean image without a
partner gets its own map. Image files always follow that rule; arrays follow it
by default (``intensity="restore"``), or are taken on the engine's scale with
``intensity="as-is"`` (floats as they are, uint8 / 255), for arrays already
mapped, as the napari Train widget maps its layers.
Colour images become one plane: MATLAB ``rgb2gray`` for denoising, the Y of
YCbCr (BT.601, ``degrade.rgb_to_y``) for super-resolution and deblocking.

Every problem (unreadable file, unmatched name, shape mismatch, non-finite
values, image smaller than a training patch) is collected and reported by name
in ONE ``ValueError`` before any training step runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.color import GRAY_WEIGHTS
from ..core.images import list_images, read_image
from ..core.intensity import Intensity
from .intensity_maps import (  # noqa: F401 (AS_IS, INTENSITY_RULES: re-exported with the helpers)
    AS_IS,
    INTENSITY_RULES,
    RESTORE,
    apply_intensity,
    array_intensity,
    array_pair_intensity,
    check_rule,
    image_intensity,
    pair_intensity,
)
from .multiscale import clean_only_problem, rescaled


@dataclass
class TrainItem:
    """One training image: ``target`` (clean) and, for real pairs, ``input`` of the same shape."""

    name: str
    target: np.ndarray  # 2-D float32, 0..1
    input: np.ndarray | None = None


@dataclass
class ValItem:
    """One fixed validation case: a degraded input, its clean target, the level and the border shave."""

    name: str
    level: float | int | None
    input: np.ndarray
    target: np.ndarray
    shave: int = 0


@dataclass
class TrainingData:
    task: str
    source: str  # "synthetic" or "pairs"
    train: list[TrainItem]
    val: list[ValItem] = field(default_factory=list)
    description: str = ""

    def summary(self) -> dict:
        """What goes into the model card about the data."""
        return {
            "source": self.source,
            "description": self.description,
            "train_images": len(self.train),
            "train_pixels": int(sum(it.target.size for it in self.train)),
            "validation_items": len(self.val),
            "validation_images": sorted({v.name for v in self.val}),
        }


def to_plane(img: np.ndarray, task: str, imap: Intensity | None = None) -> np.ndarray:
    """One 2-D float32 plane on 0..1 from a gray or colour (H, W, 3|4) image.

    ``imap``: the intensity map (``image_intensity``, ``pair_intensity``, ``engine_map``);
    None: the image's own map as restore chooses it (``image_intensity``)."""
    img = apply_intensity(img, image_intensity(img) if imap is None else imap)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        rgb = img[..., :3]
        if task in ("denoise", "deblur"):
            return (rgb.astype(np.float64) @ GRAY_WEIGHTS).astype(np.float32)  # MATLAB rgb2gray
        from ..core.degrade import rgb_to_y

        return np.asarray(rgb_to_y(rgb.astype(np.float32)), dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D gray or (H, W, 3) colour image, got shape {img.shape}")
    return img


def _quantize(plane: np.ndarray) -> np.ndarray:
    """Round to the 8-bit grid (deblocking targets are what JPEG encodes)."""
    return (np.round(np.clip(plane, 0, 1) * 255) / 255).astype(np.float32)


def source_entries(source, what: str, problems: list[str]) -> list:
    """The images of ``source`` (a folder, a list of paths/folders/arrays, or an array or stack):
    folders expand to their image files; missing paths are problems."""
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    if isinstance(source, np.ndarray):
        return [source] if source.ndim == 2 or (source.ndim == 3 and source.shape[-1] in (1, 3, 4)) else list(source)
    entries = []
    for entry in source:  # folders expand to their images; files and arrays stay
        if isinstance(entry, (str, os.PathLike)) and Path(entry).is_dir():
            try:
                entries += list_images(entry)
            except ValueError as exc:
                problems.append(f"{what}: {exc}")
        elif isinstance(entry, (str, os.PathLike)) and not Path(entry).exists():
            problems.append(f"{what} {entry}: no such file or folder")
        else:
            entries.append(entry)
    return entries


def read_entries(source, what: str, problems: list[str], intensity: str = RESTORE, names=None, label=None):
    """(name, raw array, intensity map) of each readable entry of ``source`` (``source_entries``);
    problems collected. Files: their name, and restore's map of themselves; arrays: the caller's
    ``names`` (else ``<label>[i]``, ``label`` defaulting to ``what``) and the map of rule ``intensity``."""
    for i, entry in enumerate(source_entries(source, what, problems)):
        if isinstance(entry, (str, os.PathLike)):
            name = Path(entry).name
            try:
                raw = read_image(entry)
            except Exception as exc:  # unreadable / not an image
                problems.append(f"{what} {name}: cannot read ({type(exc).__name__}: {exc})")
                continue
            yield name, raw, image_intensity  # restore's map of this image
        else:
            yield _name(names, i, label or what), np.asarray(entry), lambda a: array_intensity(a, intensity)


def _load_planes(source, task: str, what: str, problems: list[str], intensity: str = RESTORE,
                 names=None) -> list[tuple[str, np.ndarray]]:
    """(name, plane) for a folder, a list of paths, or a list of arrays (``read_entries``); problems
    collected."""
    if source is None:
        return []
    out = []
    for name, raw, imap in read_entries(source, what, problems, intensity, names):
        try:
            out.append((name, to_plane(raw, task, imap(raw))))
        except ValueError as exc:
            problems.append(f"{what} {name}: {exc}")
    return out


def _check_plane(name: str, plane: np.ndarray, min_size: int, problems: list[str]) -> bool:
    ok = True
    if not np.isfinite(plane).all():
        problems.append(f"{name}: contains non-finite values (NaN or inf)")
        ok = False
    if min(plane.shape) < min_size:
        problems.append(f"{name}: {plane.shape[1]}x{plane.shape[0]} pixels is smaller than the {min_size}x{min_size} needed for a training patch")
        ok = False
    return ok


# ------------------------------------------------------------------------- pairs
def match_pair_folders(input_dir, target_dir, problems: list[str]) -> list[tuple[str, Path, Path]]:
    """(name, input path, target path) for files with the same stem in both folders."""
    try:
        inputs = {p.stem: p for p in list_images(input_dir)}
        targets = {p.stem: p for p in list_images(target_dir)}
    except ValueError as exc:
        problems.append(str(exc))
        return []
    for stem in sorted(set(inputs) - set(targets)):
        problems.append(f"{inputs[stem].name}: no clean image of the same name in {target_dir}")
    for stem in sorted(set(targets) - set(inputs)):
        problems.append(f"{targets[stem].name}: no degraded image of the same name in {input_dir}")
    return [(stem, inputs[stem], targets[stem]) for stem in sorted(set(inputs) & set(targets))]


def _name(names, i: int, what: str) -> str:
    """The caller's name of array ``i`` (a napari layer, say), else ``<what>[i]``."""
    return names[i] if names is not None and i < len(names) else f"{what}[{i}]"


def _pair_entries(pairs, task, problems, intensity: str = RESTORE,
                  names=None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, (str, os.PathLike)) for p in pairs):
        entries = []
        for stem, pin, ptg in match_pair_folders(pairs[0], pairs[1], problems):
            try:
                raw_in, raw_tg = read_image(pin), read_image(ptg)
            except Exception as exc:
                problems.append(f"{stem}: cannot read the pair ({type(exc).__name__}: {exc})")
                continue
            try:
                map_in, map_tg = pair_intensity(raw_in, raw_tg)
                entries.append((stem, to_plane(raw_in, task, map_in), to_plane(raw_tg, task, map_tg)))
            except ValueError as exc:
                problems.append(f"{stem} ({pin.name}, {ptg.name}): {exc}")
        return entries
    entries = []
    for i, pair in enumerate(pairs):
        name = _name(names, i, "pair")
        try:
            a, b = (np.asarray(p) for p in pair)
        except (TypeError, ValueError) as exc:
            problems.append(f"{name}: expected a (degraded, clean) pair of images ({exc})")
            continue
        try:
            map_a, map_b = array_pair_intensity(a, b, intensity)
            entries.append((name, to_plane(a, task, map_a), to_plane(b, task, map_b)))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    return entries


def register_pair(name, inp, tgt, task, problems) -> np.ndarray | None:
    """The model input for a pair (LR upsampled for SR), or None with the problem recorded."""
    if inp.shape == tgt.shape:
        return inp
    sh, sw = tgt.shape[0] / inp.shape[0], tgt.shape[1] / inp.shape[1]
    if task == "sr" and sh == sw and sh == int(sh) and sh >= 2:
        from ..core.degrade import imresize

        return np.asarray(imresize(inp.astype(np.float32), output_shape=tgt.shape), dtype=np.float32)
    hint = " (for super-resolution the clean image must be an integer multiple of the low-res one)" if task == "sr" else ""
    problems.append(f"{name}: degraded image is {inp.shape[1]}x{inp.shape[0]} but clean is {tgt.shape[1]}x{tgt.shape[0]}{hint}")
    return None


def load_pair_items(pairs, task, min_size, problems, intensity: str = RESTORE, names=None) -> list[TrainItem]:
    items = []
    for name, inp, tgt in _pair_entries(pairs, task, problems, intensity, names):
        ok = _check_plane(f"{name} (degraded)", inp, 1, problems) & _check_plane(f"{name} (clean)", tgt, min_size, problems)
        model_input = register_pair(name, inp, tgt, task, problems)
        if ok and model_input is not None:
            items.append(TrainItem(name, tgt, model_input))
    return items


# ------------------------------------------------------------------------- validation
def _centre_crop(plane: np.ndarray, size: int, multiple: int = 1) -> np.ndarray:
    h, w = plane.shape
    ch = min(h, size) if size else h
    cw = min(w, size) if size else w
    ch -= ch % multiple
    cw -= cw % multiple
    y, x = (h - ch) // 2, (w - cw) // 2
    return plane[y:y + ch, x:x + cw]


def synthetic_val_items(planes, task, levels, crop, seed) -> list[ValItem]:
    """Fixed degraded validation cases (the same for every run with this seed)."""
    from ..core import degrade

    rng = np.random.default_rng([seed, 7919])
    items = []
    multiple = int(np.lcm.reduce([int(s) for s in levels])) if task == "sr" else 1
    for name, plane in planes:
        target = _centre_crop(plane, crop, multiple).astype(np.float32)
        for level in levels:
            if task == "denoise":
                noise = rng.standard_normal(target.shape).astype(np.float32) * np.float32(level / 255.0)
                items.append(ValItem(name, float(level), target + noise, target))
            elif task == "deblur":  # the evaluation protocol's degradation (evaluate.py)
                from ..core.tasks import DEBLUR_EVAL_NOISE

                blurred = degrade.blur(target, degrade.make_psf("gaussian", level))
                noise = rng.standard_normal(target.shape).astype(np.float32) * np.float32(DEBLUR_EVAL_NOISE / 255.0)
                items.append(ValItem(name, float(level), blurred + noise, target))
            elif task == "sr":
                lr_up = degrade.bicubic_degrade(target.astype(np.float32), int(level))
                items.append(ValItem(name, int(level), np.asarray(lr_up, np.float32), target, int(level)))
            else:
                t8 = np.round(np.clip(target, 0, 1) * 255).astype(np.uint8)
                jpg = degrade.jpeg_compress(t8, int(level))
                items.append(ValItem(name, int(level), np.asarray(jpg, np.float32) / 255, t8.astype(np.float32) / 255))
    return items


def pair_val_items(items: list[TrainItem], crop: int) -> list[ValItem]:
    return [ValItem(it.name, None, _centre_crop(it.input, crop), _centre_crop(it.target, crop)) for it in items]


def split_validation(entries: list, count: int, fraction: float | None, seed: int) -> tuple[list, list]:
    """Hold out whole images (never patches of training images): (train, val)."""
    n = len(entries)
    k = int(round(fraction * n)) if fraction is not None else count
    k = min(k, n - 1) if n > 1 else 0
    if k <= 0:
        return list(entries), []
    order = np.random.default_rng([seed, 104729]).permutation(n)
    val_idx = set(order[:k].tolist())
    return [e for i, e in enumerate(entries) if i not in val_idx], [e for i, e in enumerate(entries) if i in val_idx]


def _hold_out(items: list, given: list | None, config, what: str, problems: list[str]) -> tuple[list, list]:
    """(training, validation): all ``items`` and the ``given`` validation, or, with none given, the
    ``config``'s split of ``items``; raises the one ValueError listing ``problems`` (loading's, and
    an empty training set's)."""
    if given is not None:
        train, val = items, given
    else:
        train, val = split_validation(items, config.val_count, config.val_fraction, config.seed)
    if not problems and not train:
        problems.append(f"no training {what} left (all were held out for validation or none were given)")
    if problems:
        raise ValueError(_report(problems))
    return train, val


# ------------------------------------------------------------------------- entry point
def prepare_data(config, clean=None, pairs=None, validation=None, min_size: int | None = None,
                 intensity: str = RESTORE, names=None, val_names=None) -> TrainingData:
    """Load and check everything a run needs; raise ONE ValueError listing all problems.

    ``clean``: a folder, a list of image paths or arrays (synthetic degradation).
    ``pairs``: ``(degraded_folder, clean_folder)`` or a list of ``(degraded, clean)`` arrays.
    ``validation``: None (hold out ``config.val_count``/``val_fraction`` images), a folder or list
    of clean images (synthetic) or a list of pairs / a pair of folders (real pairs).
    ``intensity``: how ARRAYS reach 0..1 (files always follow restore's rule): ``"restore"`` maps
    them as ``restore`` maps its input (a pair by its degraded array's map, a clean array by its
    own); ``"as-is"`` takes them on the engine's scale, already mapped (floats as they are, even
    a little outside 0..1; uint8 / 255; other integer types refused). ``names`` / ``val_names``: what
    the problems call the training / validation ARRAYS (e.g. napari layer names; default ``pair[i]``)."""
    check_rule(intensity)
    task = config.task
    clean = clean if clean is not None else config.clean_dir
    if pairs is None and config.pairs_input_dir and config.pairs_target_dir:
        pairs = (config.pairs_input_dir, config.pairs_target_dir)
    if validation is None and config.val_pairs_input_dir and config.val_pairs_target_dir:
        validation = (config.val_pairs_input_dir, config.val_pairs_target_dir)
    validation = validation if validation is not None else config.val_dir
    if (clean is None) == (pairs is None):
        raise ValueError("give exactly one training source: clean images (clean=/--clean-dir) or degraded/clean pairs (pairs=/--pairs)")
    min_size = min_size or config.patch_size
    problems: list[str] = []
    if clean is not None:
        planes = _load_planes(clean, task, "image", problems, intensity, names)
        if task == "deblock":
            planes = [(n, _quantize(p)) for n, p in planes]
        planes = [(n, p) for n, p in planes if _check_plane(n, p, min_size, problems)]
        given = None
        if isinstance(validation, (str, os.PathLike, list, tuple)):
            given = _load_planes(validation, task, "validation image", problems, intensity, val_names)
            given = [(n, p) for n, p in given if _check_plane(n, p, 8, problems)]
        train_planes, val_planes = _hold_out(planes, given, config, "images", problems)
        # the training images only, after the hold-out: no validation image reaches training at any scale
        train_planes = rescaled(train_planes, config.scales, min_size, _quantize if task == "deblock" else None)
        val = synthetic_val_items(val_planes, task, config.resolved_val_levels(), config.val_crop, config.seed)
        desc = _describe_source(clean, len(planes))
        return TrainingData(task, "synthetic", [TrainItem(n, p) for n, p in train_planes], val, desc)
    if problem := clean_only_problem(config.scales, "a real pair"):
        raise ValueError(problem)
    if isinstance(validation, (str, os.PathLike)):
        raise ValueError(f"validation for real pairs must be pairs too: (degraded_folder, clean_folder), got the one folder {validation}")
    items = load_pair_items(pairs, task, min_size, problems, intensity, names)
    given = load_pair_items(validation, task, 8, problems, intensity, val_names) if validation is not None else None
    train_items, val_items = _hold_out(items, given, config, "pairs", problems)
    desc = f"pairs {pairs[0]} -> {pairs[1]}" if isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], (str, os.PathLike)) else f"{len(items)} array pairs"
    return TrainingData(task, "pairs", train_items, pair_val_items(val_items, config.val_crop), desc)


def _describe_source(source, n: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"{n} images from {source}"
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        if all(Path(s).is_dir() for s in source):
            return f"{n} images from " + " + ".join(str(s) for s in source)
        return f"{n} image files"
    return f"{n} arrays"


def _report(problems: Sequence[str]) -> str:
    head = f"training data refused ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
    return "\n  ".join([head, *problems])
