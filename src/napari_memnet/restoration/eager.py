"""Restore an in-memory (numpy) image of any size and layout, tile by tile.

``restore_iter(image, task, ...)`` yields one ``TileProgress`` per tile and
finally a ``RestoreResult``; ``restore_plane(model, plane, ...)`` runs a
model on a single 2-D float plane on the 0..1 scale without any intensity
normalisation (what the evaluator uses). The public ``napari_memnet.restore``
(``api.py``) sends numpy images here and dask/zarr images to ``lazy``.

How an image is processed:

* axes: ``core.axes`` (defaults YX, ZYX / YXC, TZYX / ZYXC, TZCYX); stack
  axes plane by plane;
* intensities: ``core.intensity`` (uint8 and 8-bit-range data /255, float
  0..1 as is, others percentile-normalised), one map per image (RGB: the
  colour channels together; other channels: one each), back to the input dtype;
* each item (a plane with its channels) goes through ``pipeline.restore_item``,
  the one per-plane path (RGB through the luma, super-resolution by bicubic
  upsampling first, tiles with a halo of the receptive radius so tiled
  equals untiled); an out-of-memory error halves the tile of this run and
  retries the plane;
* ``camera=True`` (gray denoising): each plane is variance-stabilised for its
  own estimated photon-plus-read noise (``core.camera``), restored with an
  intensity map of the stabilised plane, and transformed back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from ..core.axes import parse_axes
from ..core.camera import stabilise, unstabilise
from ..core.intensity import choose_intensity, output_dtype
from ..core.tasks import check_task
from .engine import RETILED, Engine, EngineSettings
from .events import RestoreResult, TileProgress, check_callbacks, check_cancel
from .pipeline import check_dtype, restore_item

MAX_OUTPUT_ELEMENTS = 2**31  # refuse results bigger than this (8 GiB as float32)


def check_image(image) -> np.ndarray:
    """The image as a numpy array (never copied or modified), or a ValueError."""
    data = np.asarray(image)
    check_dtype(data.dtype)
    if data.ndim < 2 or data.ndim > 5:
        raise ValueError(f"expected an image with 2 to 5 dimensions (..., Y, X), got shape {data.shape}")
    if data.size == 0:
        raise ValueError(f"the image is empty (shape {data.shape}); every axis, and the plane, must be at least 1")
    if data.dtype.kind == "f":
        n_nan = int(np.count_nonzero(np.isnan(data)))
        n_inf = int(np.count_nonzero(np.isinf(data)))
        if n_nan or n_inf:
            raise ValueError(
                f"the image contains {n_nan} NaN and {n_inf} infinite value(s) of {data.size}; "
                "expected finite values only"
            )
    return data


def _engine(model, settings: EngineSettings, task=None) -> Engine:
    """``model`` if it is an Engine (then ``settings`` must be the defaults), else a new one."""
    if not isinstance(model, Engine):
        return Engine.build(model, settings, task=task)
    if not settings.is_default():
        raise ValueError("got an Engine: its device, precision, tile size and ensemble are already fixed "
                         f"({model.device}, {model.precision}, {model.tile}, {model.ensemble}); expected "
                         "device='auto', precision='auto', tile_size=None, ensemble=1, got "
                         f"{settings.device!r}, {settings.precision!r}, {settings.tile_size!r}, {settings.ensemble!r}")
    return model


def _intensities(layout, view: np.ndarray, data: np.ndarray) -> tuple:
    """The intensity maps of an image: one (gray, or the RGB channels), or one per channel."""
    if layout.channel is None:
        return (choose_intensity(data),)
    if layout.is_rgb:
        return (choose_intensity(view[..., :3]),)
    return tuple(choose_intensity(view[..., k]) for k in range(layout.shape[layout.channel]))


def restore_iter(image, task, *, scale=None, model=None, axes=None, device="auto", precision="auto",
                 tile_size=None, progress: Callable[[int, int], None] | None = None, cancel=None, camera=False,
                 ensemble=1):
    """Restore a numpy ``image``: yields ``TileProgress`` per tile, then one ``RestoreResult``.

    Arguments are those of ``napari_memnet.restore``; ``model`` may also be
    an ``Engine``. Raises ``Cancelled`` (between tiles) when ``cancel`` is
    set; nothing partial is returned then. ``camera``: each gray plane goes
    through the variance-stabilising transform of its own estimated
    photon-plus-read noise first (``core.camera.stabilise``), and back after."""
    start = time.perf_counter()
    task, scale = check_task(task, scale)
    data = check_image(image)
    layout = parse_axes(axes, data.shape)
    check_callbacks(progress, cancel)
    if camera and (task != "denoise" or layout.channel is not None):
        raise ValueError(f"camera=True is for task 'denoise' on gray images (a plane or a stack of planes), "
                         f"got task {task!r} on axes {layout.axes!r}")
    out_shape = list(data.shape)
    out_shape[layout.y] *= scale
    out_shape[layout.x] *= scale
    n_out = math.prod(out_shape)
    if n_out > MAX_OUTPUT_ELEMENTS:
        raise ValueError(
            f"the result would have shape {tuple(out_shape)} = {n_out} values, more than the limit of "
            f"{MAX_OUTPUT_ELEMENTS} (2**31); restore a smaller region or a smaller stack"
        )
    engine = _engine(model, EngineSettings(device, precision, tile_size, ensemble), task)
    runner = engine.runner()

    order = (*layout.stack_axes, layout.y, layout.x) + ((layout.channel,) if layout.channel is not None else ())
    view = np.transpose(data, order)  # (stack..., Y, X[, C]); a view, never written
    out = np.empty(out_shape, dtype=output_dtype(data.dtype))
    out_view = np.transpose(out, order)
    # the intensity maps of the image (camera: none here; each plane gets one after it is stabilised)
    norms = None if camera else _intensities(layout, view, data)
    items = list(np.ndindex(*view.shape[: len(layout.stack_axes)]))
    oh, ow = layout.plane_shape[0] * scale, layout.plane_shape[1] * scale
    n_planes = len(items) * (1 if camera else len(norms))  # planes the network runs on

    done = 0
    total = n_planes * runner.tiles_per_plane(oh, ow)
    for idx in items:
        check_cancel(cancel)
        if camera:
            src, noise = stabilise(view[idx])
            plane_norms, target = (choose_intensity(src),), np.empty(src.shape, np.float32)
        else:
            src, plane_norms, target = view[idx], norms, out_view[idx]
        for event in restore_item(src, target, plane_norms, runner, rgb=layout.is_rgb, scale=scale,
                                  cancel=cancel):
            if event is RETILED:  # the plane restarts with smaller tiles: recount what is left
                total = done + (n_planes - runner.planes + 1) * runner.tiles_per_plane(oh, ow)
                continue
            done += 1
            elapsed = time.perf_counter() - start
            if progress is not None:
                progress(done, total)
            yield TileProgress(done, total, elapsed, elapsed / done * (total - done))
        if camera:
            out_view[idx] = unstabilise(target, noise, data.dtype)
    yield RestoreResult(
        data=out, model_name=engine.model.name, device=str(engine.device), precision=engine.precision,
        tile_size=runner.tile, seconds=time.perf_counter() - start, task=task, scale=scale, axes=layout.axes,
        ensemble=engine.ensemble,
    )


def restore_plane(model, plane, *, device="auto", precision="auto", tile_size=None, progress=None,
                  cancel=None, ensemble=1) -> np.ndarray:
    """Run ``model`` on one 2-D plane of intensities on 0..1, with NO normalisation.

    For super-resolution pass the already bicubic-upsampled plane. Returns a
    float32 array of the plane's shape. ``model`` is anything ``load_model``
    accepts (name, path, RestorationModel, network), or an ``Engine`` already
    built for it: many planes through one model (the evaluator) should build
    the ``Engine`` once and pass it here, so the model is loaded, folded and
    moved to its device once. An ``Engine`` carries its own device, precision
    and tile size; ``device``/``precision``/``tile_size`` (and ``ensemble``,
    the number of dihedral transforms averaged) must then be left at their
    defaults."""
    if model is None:
        raise ValueError("restore_plane needs a model (name, path, RestorationModel, network or Engine)")
    data = check_image(plane)
    if data.ndim != 2:
        raise ValueError(f"restore_plane expects one 2-D plane (Y, X), got shape {data.shape}")
    check_callbacks(progress, cancel)
    runner = _engine(model, EngineSettings(device, precision, tile_size, ensemble)).runner()
    values = np.asarray(data, dtype=np.float32)
    out = np.empty(values.shape, dtype=np.float32)
    done = 0
    total = runner.tiles_per_plane(*values.shape)
    for event in runner.run(values, out, cancel):
        if event is RETILED:
            total = done + runner.tiles_per_plane(*values.shape)
            continue
        done += 1
        if progress is not None:
            progress(done, total)
    return out
