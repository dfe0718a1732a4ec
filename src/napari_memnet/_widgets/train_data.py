"""Gathering training data for the Train widget: layers or folders -> the training engine's inputs.

No Qt here (napari layers are only read), so every rule is testable on its own.
Four sources, named by the ``SOURCE_*`` constants:

* layer pairs (degraded, clean), registered pixel for pixel (for super-resolution
  the clean layer is ``scale`` times larger);
* two folders of images matched by file name (TIFF, PNG, JPEG, BMP);
* clean layers, or a folder of clean images, degraded on the fly by the engine;
* noisy layers, or a folder of noisy images, alone: self-supervised denoising
  (``training.self_supervised``), read, mapped and split as clean layers are.

Validation is one of ``VAL_*``: a held-out region of every image (the far end of
its longer axis; layer sources only), a held-out fraction of the images/pairs,
or none. The engine (``napari_memnet.training.data.prepare_data``) checks
everything; ``check_request`` runs it, handing it the layer names so that its
messages name the layers the user sees.

The main thread only checks what it can without reading pixels (layer kinds,
shapes, the plane on screen) and builds a ``DataRequest`` that points at the
layers' planes (``LayerPlane``). ``materialize`` (run by ``check_request``, in
the worker thread) reads the planes and maps their intensities to 0..1 the way
``restore`` maps its input, by the engine's own rule for images and pairs
(``napari_memnet.training.intensity_maps``: 8-bit /255, 0..1 floats as they
are, anything else by percentiles; for a pair the map of the degraded layer,
applied to both), so a fine-tuned model meets at restore time the intensities
it trained on. Each layer is mapped whole BEFORE a held-out region is split
off, so both parts share one map; the mapped planes go to the engine with
``intensity="as-is"`` (already on its scale).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.tasks import TASKS

SOURCE_LAYER_PAIRS = "layer pairs (degraded, clean)"
SOURCE_FOLDER_PAIRS = "folder pairs (matched by name)"
SOURCE_CLEAN_LAYERS = "clean layers (synthetic degradation)"
SOURCE_CLEAN_FOLDER = "clean folder (synthetic degradation)"
SOURCE_NOISY_LAYERS = "noisy layers only (self-supervised)"
SOURCE_NOISY_FOLDER = "noisy folder only (self-supervised)"
SOURCES = (SOURCE_LAYER_PAIRS, SOURCE_FOLDER_PAIRS, SOURCE_CLEAN_LAYERS, SOURCE_CLEAN_FOLDER,
           SOURCE_NOISY_LAYERS, SOURCE_NOISY_FOLDER)
LAYER_SOURCES = (SOURCE_LAYER_PAIRS, SOURCE_CLEAN_LAYERS, SOURCE_NOISY_LAYERS)
NOISY_SOURCES = (SOURCE_NOISY_LAYERS, SOURCE_NOISY_FOLDER)  # self-supervised: noisy images alone

VAL_REGION = "held-out region of each image"
VAL_FRACTION = "held-out fraction of the images"
VAL_NONE = "none"

# synthetic degradation levels offered by default (text of the "levels" field)
DEFAULT_LEVEL_TEXT = {name: task.widget_levels for name, task in TASKS.items()}
LEVEL_HELP = {name: task.widget_levels_help for name, task in TASKS.items()}


@dataclass
class DataRequest:
    """What the engine gets: ``clean``, ``pairs`` or ``noisy``, optional explicit ``validation``."""

    source: str
    clean: list | str | None = None
    noisy: list | str | None = None
    pairs: list | tuple | None = None
    validation: list | tuple | None = None
    val_fraction: float | None = None  # hold out whole images (engine side)
    names: list = field(default_factory=list)  # what the engine's messages call each training array
    val_names: list = field(default_factory=list)  # ... and each validation array
    layers: list | None = None  # LayerPlane (clean) or (LayerPlane, LayerPlane) pairs, read by materialize
    split: tuple | None = None  # (validation mode, fraction, task) applied by materialize
    description: str = ""
    levels: tuple | None = None  # fixed by the data (SR pair scale), else None
    preview_origin: tuple | None = None  # (layer, (y, x)) of the first validation image
    notes: list = field(default_factory=list)  # things worth telling the user (not errors)
    intensity: str = "restore"  # the engine's rule for arrays: "as-is" once the layers are mapped here


def parse_levels(text: str, task: str) -> tuple:
    """``"5, 50"`` -> ``(5.0, 50.0)``; the engine's ``TrainConfig`` checks the ranges."""
    parts = [p for p in re.split(r"[,\s;]+", str(text).strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"levels {text!r}: expected numbers, {LEVEL_HELP.get(task, '')}") from None
    if not values:
        raise ValueError(f"levels are empty: expected {LEVEL_HELP.get(task, 'numbers')}")
    if task in ("sr", "deblock"):
        if any(v != int(v) for v in values):
            raise ValueError(f"levels {text!r}: expected whole numbers, {LEVEL_HELP[task]}")
        values = tuple(int(v) for v in values)
    return values


@dataclass(frozen=True)
class LayerPlane:
    """The plane of an image layer to read later, in the worker (``read``)."""

    layer: object
    index: tuple

    @property
    def shape(self) -> tuple:
        return tuple(self.layer.data.shape[len(self.index):])

    def read(self) -> np.ndarray:
        """An in-memory copy of the plane (2-D, or 2-D RGB)."""
        data = self.layer.data
        return np.array(data[self.index] if self.index else data)


def layer_plane(layer, world_point=None) -> LayerPlane:
    """The plane of an image layer shown at ``world_point``, checked but not read (``LayerPlane.read``)."""
    from napari.layers import Image

    from . import layer_io

    if layer is None:
        raise ValueError("no layer chosen: pick an image layer")
    if not isinstance(layer, Image):
        raise ValueError(f"{layer.name!r} is a {type(layer).__name__} layer; training uses image layers")
    if getattr(layer, "multiscale", False):
        raise ValueError(f"{layer.name!r} is a multiscale (pyramid) image; use one level as its own layer")
    if layer_io.n_stack_axes(layer) > 0:
        point = world_point if world_point is not None else [0.0] * layer.ndim
        return LayerPlane(layer, layer_io.plane_index(layer, point))
    return LayerPlane(layer, ())


def _note_percentiles(imap, name: str, notes: list | None) -> None:
    if imap.mode == "percentile" and notes is not None:
        notes.append(f"{name} is neither 8-bit nor 0..1: intensities mapped by its 0.1/99.9th percentiles "
                     f"({imap.low:.4g}..{imap.high:.4g} -> 0..1), as Restore does")


def map_pair(degraded: np.ndarray, clean: np.ndarray, name: str = "",
             notes: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A (degraded, clean) plane pair on 0..1 as ``restore`` will map the degraded one,
    by the engine's rule for pairs (``training.intensity_maps.pair_intensity``): the
    degraded plane's map, also applied to the clean plane unless that has a fixed
    scale of its own. ValueError where the two cannot be put on one scale (an 8-bit
    degraded layer beside a float clean layer of another range, a constant layer
    that is neither 8-bit nor 0..1). Planes with NaN/inf are left for the engine's checks."""
    from ..training.intensity_maps import apply_intensity, pair_intensity

    dmap, cmap = pair_intensity(degraded, clean)
    _note_percentiles(dmap, name, notes)
    return apply_intensity(degraded, dmap), apply_intensity(clean, cmap)


def map_image(plane: np.ndarray, name: str = "", notes: list | None = None) -> np.ndarray:
    """A clean plane on 0..1 by its own map, as ``restore`` would map it
    (``training.intensity_maps.image_intensity``); ValueError for a constant plane
    that is neither 8-bit nor 0..1."""
    from ..training.intensity_maps import apply_intensity, image_intensity

    imap = image_intensity(plane)
    _note_percentiles(imap, name, notes)
    return apply_intensity(plane, imap)


def _spatial(arr) -> tuple[int, int]:
    return (arr.shape[0], arr.shape[1])


def split_region(arr: np.ndarray, fraction: float, unit: int = 1, axis: int | None = None):
    """(train part, held-out part, (y, x) offset of the held-out part, axis).

    The held-out part is the last ``fraction`` of the longer spatial axis (or ``axis``),
    its start a multiple of ``unit`` (the SR scale of a low-resolution partner)."""
    h, w = _spatial(arr)
    if axis is None:
        axis = 0 if h >= w else 1
    n = (h, w)[axis]
    cut = int(round(n * (1.0 - fraction) / unit)) * unit
    cut = min(max(cut, unit), n - unit) if n >= 2 * unit else n
    if axis == 0:
        return arr[:cut], arr[cut:], (cut, 0), axis
    return arr[:, :cut], arr[:, cut:], (0, cut), axis


def _sr_scale(degraded, clean) -> int:
    """The SR factor of a (low-resolution, clean) pair of planes or ``LayerPlane``s (1: none)."""
    (dh, dw), (ch, cw) = _spatial(degraded), _spatial(clean)
    if dh and dw and ch % dh == 0 and cw % dw == 0 and ch // dh == cw // dw and ch // dh >= 2:
        return ch // dh
    return 1


def from_layer_pairs(pairs, task: str, validation: str, fraction: float, world_point=None) -> DataRequest:
    """Request from ``[(degraded_layer, clean_layer), ...]`` (checked, not read: ``materialize``)."""
    if not pairs:
        raise ValueError("no layer pair chosen: pick a degraded and a clean layer (and press 'add pair' for more)")
    problems, planes, names = [], [], []
    for deg, cln in pairs:
        label = f"{getattr(deg, 'name', deg)!r} \u2192 {getattr(cln, 'name', cln)!r}"
        names.append(label)
        if deg is cln:
            problems.append(f"{label}: the degraded and the clean layer are the same layer")
            continue
        try:
            planes.append((layer_plane(deg, world_point), layer_plane(cln, world_point)))
        except ValueError as exc:
            problems.append(f"{label}: {exc}")
    if problems:
        raise ValueError(_report(problems))
    scales = {_sr_scale(d, c) for d, c in planes} if task == "sr" else {1}
    levels = (scales.pop(),) if task == "sr" and len(scales) == 1 and 1 not in scales else None
    return DataRequest(SOURCE_LAYER_PAIRS, names=names, val_names=names, levels=levels, intensity="as-is",
                       description="napari layer pairs: " + ", ".join(names), layers=planes,
                       split=(validation, fraction, task))


def from_clean_layers(layers, validation: str, fraction: float, world_point=None, noisy: bool = False) -> DataRequest:
    """Request from clean layers (the engine degrades them on the fly), or with ``noisy`` from noisy
    layers alone (self-supervised); checked, not read: ``materialize``."""
    kind = "noisy" if noisy else "clean"
    if not layers:
        raise ValueError(f"no {kind} layer chosen: select one or more image layers")
    problems, planes = [], []
    for layer in layers:
        try:
            planes.append(layer_plane(layer, world_point))
        except ValueError as exc:
            problems.append(f"{layer.name!r}: {exc}")
    if problems:
        raise ValueError(_report(problems))
    return DataRequest(SOURCE_NOISY_LAYERS if noisy else SOURCE_CLEAN_LAYERS, names=[repr(la.name) for la in layers],
                       val_names=[f"validation region of {la.name!r}" for la in layers], intensity="as-is",
                       description=f"napari {kind} layers: " + ", ".join(repr(la.name) for la in layers),
                       layers=planes, split=(validation, fraction, None))


def materialize(request: DataRequest) -> DataRequest:
    """Read a layer request's planes, map their intensities and split off the held-out
    regions (in the worker thread); ``ValueError`` naming the layers. Folder requests
    and requests already read pass through."""
    if request.layers is None:
        return request
    validation, fraction, task = request.split
    problems, mapped = [], []
    for entry, name in zip(request.layers, request.names):
        try:
            if request.source == SOURCE_LAYER_PAIRS:
                deg, cln = entry
                mapped.append(map_pair(deg.read(), cln.read(), name=repr(deg.layer.name), notes=request.notes))
            else:
                mapped.append(map_image(entry.read(), name=name, notes=request.notes))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise ValueError(_report(problems))
    if request.source == SOURCE_LAYER_PAIRS:
        _split_pairs(request, mapped, validation, fraction, task == "sr")
    else:
        _split_images(request, mapped, validation, fraction)
    request.layers = None
    return request


def _hold_out_fraction(req: DataRequest, count: int, what: str, validation: str, fraction: float) -> None:
    """Whole images (the engine's ``val_fraction``) held out, when that is the validation asked for."""
    if validation == VAL_FRACTION:
        req.val_fraction = fraction
        if count < 2:
            req.notes.append(f"one {what} only: nothing to hold out as a fraction, so no validation "
                             f"(choose '{VAL_REGION}')")


def _split_pairs(req: DataRequest, arrays: list, validation: str, fraction: float, task_sr: bool) -> None:
    registered = all(_spatial(d) == _spatial(c) or (task_sr and _sr_scale(d, c) > 1) for d, c in arrays)
    if validation == VAL_REGION and registered:  # unregistered pairs go whole: the engine names their sizes
        train, val = [], []
        for i, (d, c) in enumerate(arrays):
            s = _sr_scale(d, c) if task_sr else 1
            c_tr, c_val, offset, axis = split_region(c, fraction, unit=s)
            cut = (offset[0] or offset[1]) // s
            d_tr, d_val = (d[:cut], d[cut:]) if axis == 0 else (d[:, :cut], d[:, cut:])
            train.append((d_tr, c_tr))
            val.append((d_val, c_val))
            if i == 0:
                req.preview_origin = (req.layers[0][1].layer, offset, c_val.shape[:2])
        req.pairs, req.validation = train, val
        return
    req.pairs = arrays
    _hold_out_fraction(req, len(arrays), "pair", validation, fraction)


def _split_images(req: DataRequest, planes: list, validation: str, fraction: float) -> None:
    if validation == VAL_REGION:
        train, val = [], []
        for i, plane in enumerate(planes):
            tr, va, offset, _axis = split_region(plane, fraction)
            train.append(tr)
            val.append(va)
            if i == 0:
                req.preview_origin = (req.layers[0].layer, offset, va.shape[:2])
        planes, req.validation = train, val
    if req.source in NOISY_SOURCES:
        req.noisy = planes
    else:
        req.clean = planes
    if validation == VAL_REGION:
        return
    _hold_out_fraction(req, len(planes), "image", validation, fraction)


def _folder(path, what: str) -> Path:
    if path is None or str(path) in ("", "."):
        raise ValueError(f"no {what} folder chosen")
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{what} folder {str(path)!r} does not exist or is not a folder")
    return path


def from_folder_pairs(degraded_dir, clean_dir, validation: str, fraction: float) -> DataRequest:
    """Request from two folders whose images match by file name (stem)."""
    deg, cln = _folder(degraded_dir, "degraded"), _folder(clean_dir, "clean")
    if deg.resolve() == cln.resolve():
        raise ValueError("the degraded and the clean folder are the same folder")
    if validation == VAL_REGION:
        raise ValueError(f"'{VAL_REGION}' is for layer sources; for folders choose '{VAL_FRACTION}'")
    return DataRequest(SOURCE_FOLDER_PAIRS, pairs=(str(deg), str(cln)),
                       val_fraction=fraction if validation == VAL_FRACTION else None,
                       description=f"folder pairs {deg} -> {cln}")


def from_clean_folder(folder, validation: str, fraction: float, noisy: bool = False) -> DataRequest:
    """Request from a folder of clean images (degraded on the fly), or with ``noisy`` of noisy images alone."""
    kind = "noisy" if noisy else "clean"
    path = _folder(folder, kind)
    if validation == VAL_REGION:
        raise ValueError(f"'{VAL_REGION}' is for layer sources; for folders choose '{VAL_FRACTION}'")
    return DataRequest(SOURCE_NOISY_FOLDER if noisy else SOURCE_CLEAN_FOLDER, clean=None if noisy else str(path),
                       noisy=str(path) if noisy else None, val_fraction=fraction if validation == VAL_FRACTION else None,
                       description=f"{kind} images from {path}")


def preview_placement(request: DataRequest, preview_shape) -> dict:
    """``scale``/``translate`` that put a preview of the first validation crop over its place.

    Only known for a held-out region of a 2-D layer (``request.preview_origin``); else ``{}``.
    The engine centre-crops validation images, so the crop sits in the middle of the region."""
    origin = request.preview_origin if request is not None else None
    if origin is None:
        return {}
    layer, (oy, ox), (h, w) = origin
    if layer.ndim != 2:
        return {}
    ph, pw = preview_shape[:2]
    oy, ox = oy + (h - ph) // 2, ox + (w - pw) // 2
    scale = tuple(float(v) for v in layer.scale)
    return {"scale": scale, "translate": (float(layer.translate[0]) + oy * scale[0],
                                          float(layer.translate[1]) + ox * scale[1])}


def check_request(request: DataRequest, config):
    """Read the request (``materialize``), then run the engine's data loading and checks,
    which name the layers; ``ValueError`` or ``TrainingData``. Runs in the worker thread."""
    from ..training.data import prepare_data
    from ..training.sampler import crop_size

    materialize(request)
    if request.noisy is not None:  # noisy images alone
        from ..training.noisy_data import prepare_noisy_data

        data = prepare_noisy_data(config, request.noisy, request.validation, intensity=request.intensity,
                                  names=request.names or None, val_names=request.val_names or None)
        data.description = request.description
        return data
    need = crop_size(config.task, config.patch_size, config.levels, request.pairs is not None)
    data = prepare_data(config, clean=request.clean, pairs=request.pairs, validation=request.validation,
                        min_size=need, intensity=request.intensity, names=request.names or None,
                        val_names=request.val_names or None)
    data.description = request.description
    return data


def _report(problems: list[str]) -> str:
    head = f"training data refused ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
    return "\n  ".join([head, *problems])
