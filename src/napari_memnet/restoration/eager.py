"""Restore images of any size and layout with a MemNet/RED30 model.

``restore(image, task, ...)`` is the public entry point; it consumes
``restore_iter(...)``, a generator that yields one ``TileProgress`` per tile
and finally a ``RestoreResult``. ``restore_plane(model, plane, ...)`` runs a
model on a single 2-D float plane on the 0..1 scale without any intensity
normalisation (what the evaluator uses).

How an image is processed:

* axes: ``napari_memnet.core.axes`` (defaults YX, ZYX / YXC, TZYX / ZYXC, TZCYX);
  stack axes plane by plane, independent channels one by one, RGB(A) through
  the luma (Y of YCbCr) with chroma carried and alpha left alone;
* intensities: ``napari_memnet.core.intensity`` (uint8 and 8-bit-range data /255,
  float 0..1 as is, others percentile-normalised) and back to the input dtype;
* super-resolution: each plane (and the chroma) is MATLAB-bicubic upsampled by
  ``scale`` first (``degrade.imresize``), so the output is ``scale`` times
  larger in Y and X;
* tiles: ``napari_memnet.core.tiling`` with a halo of the model's receptive radius,
  so tiled equals untiled; a CUDA (or host) out-of-memory error halves the
  tile and retries the plane.

The model runs as ``RestorationModel.inference_module()`` (BatchNorm folded)
in ``torch.inference_mode()``, under autocast for bf16/fp16.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from ..core.axes import parse_axes
from ..core.intensity import Intensity, cast_output, choose_intensity, output_dtype
from ..core.tiling import count_tiles, tile_grid

TASKS = ("denoise", "sr", "deblock")
SR_SCALES = (2, 3, 4)
MAX_OUTPUT_ELEMENTS = 2**31  # refuse results bigger than this (8 GiB as float32)
MIN_RETRY_TILE = 32  # out-of-memory retries stop below this tile side
# channels_last memory format: None = on CUDA and the CPU (measured ~1.2x faster on
# the CPU, docs/performance.md), off on MPS; True/False force it (``memnet bench --channels-last``).
CHANNELS_LAST: bool | None = None


class Cancelled(Exception):
    """Raised when ``cancel`` asks to stop; no partial result is returned."""


@dataclass(frozen=True)
class TileProgress:
    """One finished tile: ``done`` of ``total`` tiles, seconds elapsed and the ETA."""

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


# ---------------------------------------------------------------------------- argument checks
def check_task(task, scale) -> tuple[str, int]:
    """(task, integer scale); scale is 1 unless the task is 'sr'."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
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


def check_image(image) -> np.ndarray:
    """The image as a numpy array (never copied or modified), or a ValueError."""
    data = np.asarray(image)
    if data.dtype.kind not in "iuf":
        raise ValueError(
            f"expected an integer or floating-point image, got dtype {data.dtype} "
            "(bool, complex, object and string arrays are not images)"
        )
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


def is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _check_callbacks(progress, cancel) -> None:
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be a callable progress(done, total) or None, got {progress!r}")
    if cancel is not None and not (hasattr(cancel, "is_set") or callable(cancel)):
        raise ValueError(f"cancel must be a callable returning bool, a threading.Event or None, got {cancel!r}")


def _check_tile_size(tile_size) -> int | None:
    if tile_size is None:
        return None
    if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive integer (pixels) or None, got {tile_size!r}")
    return int(tile_size)


# ---------------------------------------------------------------------------- the engine
def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if isinstance(exc, (MemoryError, *oom_types)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


_RETILED = object()  # yielded by Engine.run_plane when it restarts a plane with smaller tiles


class Engine:
    """A prepared inference module on a device, run tile by tile on planes.

    ``Engine.built`` counts the engines constructed in this process (each one
    loads, folds and moves a model): a diagnostic for code that must build one
    and reuse it, such as the evaluator."""

    built = 0

    def __init__(self, model, *, device="auto", precision="auto", tile_size=None, task=None):
        import torch

        from ..core.devices import default_tile_size, resolve_device, resolve_precision
        from ..models.files import load_model

        self.model = load_model(model, task=task)
        if self.model.in_channels != 1:
            raise ValueError(
                f"model {self.model.name!r} takes {self.model.in_channels} input channels; "
                "restore needs a 1-channel (gray / luma) model"
            )
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.halo = int(self.model.receptive_radius)
        self.align = int(getattr(self.model.network, "alignment", 1))  # tiles on the space-to-depth grid
        network = self.model.network
        was_training = network.training
        module = self.model.inference_module()
        if module is network:  # nothing to fold: work on a copy, never on the caller's network
            module = copy.deepcopy(network)
        network.train(was_training)
        auto_cl = self.device.type in ("cuda", "cpu")
        self.channels_last = auto_cl if CHANNELS_LAST is None else bool(CHANNELS_LAST)
        module = module.eval().to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        requested = _check_tile_size(tile_size)
        self.tile = requested if requested is not None else default_tile_size(self.device, network, self.precision)
        Engine.built += 1

    def forward(self, window: np.ndarray) -> "torch.Tensor":  # noqa: F821
        """The network output for one 2-D float32 window, as a 2-D tensor on the device."""
        import torch

        from ..core.devices import autocast

        x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None, None].to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.precision):
            y = self.module(x)
        return y[0, 0]

    def run_plane(self, plane: np.ndarray, out: np.ndarray, cancel=None) -> Generator:
        """Restore ``plane`` into ``out`` (float32, same shape); yield once per tile.

        On out-of-memory the tile side is halved and the plane restarted
        (``_RETILED`` is yielded first so the caller can recount tiles)."""
        import torch

        h, w = plane.shape
        while True:
            try:
                for tile in tile_grid(h, w, self.tile, self.halo, self.align):
                    if is_cancelled(cancel):
                        raise Cancelled("restoration cancelled")
                    y = self.forward(plane[tile.window_slices])[tile.crop]
                    out[tile.core_slices] = y.float().cpu().numpy()
                    del y
                    yield None
                return
            except Cancelled:
                raise
            except Exception as exc:
                if not _is_out_of_memory(exc) or self.tile <= MIN_RETRY_TILE:
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.tile = max(MIN_RETRY_TILE, self.tile // 2)
                yield _RETILED

    def tiles_per_plane(self, h: int, w: int) -> int:
        return count_tiles(h, w, self.tile, self.align)


# ---------------------------------------------------------------------------- public API
def _upsample(values: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB bicubic upsampling of the last two axes (float32 result)."""
    from ..core.degrade import imresize

    return np.asarray(imresize(values, scale), dtype=np.float32)


def _plane_jobs(layout, view: np.ndarray, data: np.ndarray):
    """[(stack index, channel or None, Intensity)] for every gray plane to restore,
    plus the Intensity of the colour channels for RGB(A)."""
    stack_shape = view.shape[: len(layout.stack_axes)]
    c = layout.channel
    if c is None:
        maps = {None: choose_intensity(data)}
    elif layout.is_rgb:
        maps = {"rgb": choose_intensity(view[..., :3])}
    else:
        maps = {k: choose_intensity(view[..., k]) for k in range(layout.shape[c])}
    jobs = [(idx, key) for idx in np.ndindex(*stack_shape) for key in maps]
    return jobs, maps


def restore_iter(image, task, *, scale=None, model=None, axes=None, device="auto", precision="auto",
                 tile_size=None, progress: Callable[[int, int], None] | None = None, cancel=None,
                 chunks=None, scheduler=None):
    """Generator form of ``restore``: yields ``TileProgress`` per tile, then one ``RestoreResult``.

    Arguments are those of ``restore``. Raises ``Cancelled`` (between tiles)
    when ``cancel`` is set; nothing partial is returned then. A dask or zarr
    image (or any image with a ``scheduler``) is computed block by block
    (``lazy.restore_dask_iter``): one ``TileProgress`` per block, and the
    final ``RestoreResult`` holds the whole computed array."""
    from .lazy.graph import is_lazy_input

    if is_lazy_input(image) or scheduler is not None:
        from .lazy.graph import as_dask, restore_dask_iter

        if not is_lazy_input(image):
            image = check_image(image)  # a numpy image for a scheduler: same checks, then dask
        yield from restore_dask_iter(as_dask(image), task, scale=scale, model=model, axes=axes,
                                     device=device, precision=precision, tile_size=tile_size,
                                     progress=progress, cancel=cancel, chunks=chunks, scheduler=scheduler)
        return
    if chunks is not None:
        raise ValueError("chunks applies only to dask/zarr images or with a scheduler")
    start = time.perf_counter()
    task, scale = check_task(task, scale)
    data = check_image(image)
    layout = parse_axes(axes, data.shape)
    _check_callbacks(progress, cancel)
    out_shape = list(data.shape)
    out_shape[layout.y] *= scale
    out_shape[layout.x] *= scale
    n_out = math.prod(out_shape)
    if n_out > MAX_OUTPUT_ELEMENTS:
        raise ValueError(
            f"the result would have shape {tuple(out_shape)} = {n_out} values, more than the limit of "
            f"{MAX_OUTPUT_ELEMENTS} (2**31); restore a smaller region or a smaller stack"
        )
    engine = Engine(model, device=device, precision=precision, tile_size=tile_size, task=task)

    order = (*layout.stack_axes, layout.y, layout.x) + ((layout.channel,) if layout.channel is not None else ())
    view = np.transpose(data, order)  # (stack..., Y, X[, C]); a view, never written
    out = np.empty(out_shape, dtype=output_dtype(data.dtype))
    out_view = np.transpose(out, order)
    jobs, maps = _plane_jobs(layout, view, data)
    oh, ow = layout.plane_shape[0] * scale, layout.plane_shape[1] * scale

    done = 0
    total = len(jobs) * engine.tiles_per_plane(oh, ow)
    restored = np.empty((oh, ow), dtype=np.float32)
    for job_index, (idx, key) in enumerate(jobs):
        if is_cancelled(cancel):
            raise Cancelled("restoration cancelled")
        src = view[idx]
        if key == "rgb":
            from ..core.degrade import rgb_to_ycbcr, ycbcr_to_rgb

            ycc = np.asarray(rgb_to_ycbcr(maps[key].forward(src[..., :3])), dtype=np.float32)
            if scale > 1:
                ycc = np.moveaxis(_upsample(np.moveaxis(ycc, -1, 0), scale), 0, -1)
            plane = np.ascontiguousarray(ycc[..., 0])
        else:
            plane = maps[key].forward(src if key is None else src[..., key])
            if scale > 1:
                plane = _upsample(plane, scale)
        runner = engine.run_plane(plane, restored, cancel)
        for event in runner:
            if event is _RETILED:
                remaining = len(jobs) - job_index
                total = done + remaining * engine.tiles_per_plane(oh, ow)
                continue
            done += 1
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (total - done)
            if progress is not None:
                progress(done, total)
            yield TileProgress(done, total, elapsed, eta)
        if key == "rgb":
            ycc[..., 0] = restored
            rgb = np.asarray(ycbcr_to_rgb(ycc), dtype=np.float32)
            out_view[idx][..., :3] = maps[key].inverse(rgb, data.dtype)
            if layout.has_alpha:
                alpha = src[..., 3]
                if scale > 1:
                    alpha = cast_output(_upsample(np.asarray(alpha, dtype=np.float32), scale), data.dtype)
                out_view[idx][..., 3] = alpha
        elif key is None:
            maps[key].inverse_into(restored, out_view[idx])
        else:
            maps[key].inverse_into(restored, out_view[idx][..., key])
    yield RestoreResult(
        data=out, model_name=engine.model.name, device=str(engine.device), precision=engine.precision,
        tile_size=engine.tile, seconds=time.perf_counter() - start, task=task, scale=scale, axes=layout.axes,
    )


def restore(image, task, *, scale=None, model=None, axes=None, device="auto", precision="auto",
            tile_size=None, progress=None, cancel=None, chunks=None, scheduler=None):
    """Restore ``image`` for ``task`` ("denoise", "sr" or "deblock") and return the result.

    * ``scale``: 2, 3 or 4 for "sr" (the output is that many times larger in Y and X).
    * ``model``: a bundled or user model name, a model file path, a loaded
      ``RestorationModel`` or a network; default: the task's bundled model.
    * ``axes``: e.g. "TZYX", "YXC" when the default for the shape is wrong.
    * ``device``: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N", "mps".
    * ``precision``: "auto" (bf16 on CUDA, fp16 on MPS, fp32 on CPU), "fp32", "bf16", "fp16".
    * ``tile_size``: tile core side in pixels; None chooses from device memory.
    * ``progress(done, total)``: called after every tile.
    * ``cancel``: a callable returning True, or a ``threading.Event``, to stop
      between tiles with ``Cancelled``.

    * ``chunks`` / ``scheduler`` (big data, ``napari_memnet.restoration.lazy.graph``): a dask or
      zarr ``image`` gives a LAZY dask array of the result (overlapping blocks
      with a halo of the receptive field, so it equals the in-memory result;
      nothing is computed until asked; ``chunks`` overrides the block size).
      With ``scheduler`` ("threads", "synchronous", a ``tcp://`` address of a
      dask.distributed scheduler, or a ``Client``) the blocks are computed
      there and a numpy array is returned, for numpy input too.

    The input is never modified. Integer inputs come back in their dtype,
    floating-point ones as float32."""
    from .lazy.graph import is_lazy_input

    if is_lazy_input(image) and scheduler is None:
        from .lazy.graph import restore_dask

        return restore_dask(image, task, scale=scale, model=model, axes=axes, device=device,
                            precision=precision, tile_size=tile_size, chunks=chunks)
    result = None
    for item in restore_iter(image, task, scale=scale, model=model, axes=axes, device=device, precision=precision,
                             tile_size=tile_size, progress=progress, cancel=cancel, chunks=chunks,
                             scheduler=scheduler):
        result = item
    return result.data



def restore_plane(model, plane, *, device="auto", precision="auto", tile_size=None, progress=None,
                  cancel=None) -> np.ndarray:
    """Run ``model`` on one 2-D plane of intensities on 0..1, with NO normalisation.

    For super-resolution pass the already bicubic-upsampled plane. Returns a
    float32 array of the plane's shape. ``model`` is anything ``load_model``
    accepts (name, path, RestorationModel, network), or an ``Engine`` already
    built for it: many planes through one model (the evaluator) should build
    the ``Engine`` once and pass it here, so the model is loaded, folded and
    moved to its device once. An ``Engine`` carries its own device, precision
    and tile size; ``device``/``precision``/``tile_size`` must then be left at
    their defaults."""
    if model is None:
        raise ValueError("restore_plane needs a model (name, path, RestorationModel, network or Engine)")
    data = check_image(plane)
    if data.ndim != 2:
        raise ValueError(f"restore_plane expects one 2-D plane (Y, X), got shape {data.shape}")
    _check_callbacks(progress, cancel)
    if isinstance(model, Engine):
        if device != "auto" or precision != "auto" or tile_size is not None:
            raise ValueError("restore_plane got an Engine: its device, precision and tile size are already "
                             f"fixed ({model.device}, {model.precision}, {model.tile}); expected device='auto', "
                             f"precision='auto', tile_size=None, got {device!r}, {precision!r}, {tile_size!r}")
        engine = model
    else:
        engine = Engine(model, device=device, precision=precision, tile_size=tile_size)
    values = np.asarray(data, dtype=np.float32)
    out = np.empty(values.shape, dtype=np.float32)
    done = 0
    total = engine.tiles_per_plane(*values.shape)
    for event in engine.run_plane(values, out, cancel):
        if event is _RETILED:
            total = done + engine.tiles_per_plane(*values.shape)
            continue
        done += 1
        if progress is not None:
            progress(done, total)
    return out


__all__ = [
    "Cancelled",
    "Engine",
    "MAX_OUTPUT_ELEMENTS",
    "RestoreResult",
    "SR_SCALES",
    "TASKS",
    "TileProgress",
    "restore",
    "restore_iter",
    "restore_plane",
]
