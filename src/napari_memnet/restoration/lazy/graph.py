"""Lazy restoration of dask (and zarr) arrays, block by block with exact seams.

``restore_dask(image, task, ...)`` returns a dask array of the restored image
and computes nothing but (for non-8-bit data) a small intensity sample. The
graph is ``dask.array.map_overlap`` over the Y/X axes with ``depth = halo``
and ``boundary="none"``:

* ``halo`` = the model's receptive radius (denoise/deblock), so every output
  pixel of a block sees exactly the input pixels it would see untiled; at the
  image border a block has no halo and the network's own zero padding applies,
  exactly as in an untiled run. Blocks are therefore exact up to float
  summation order (observed differences <= 1e-6).
* super-resolution (``scale`` s): a block with its low-resolution halo is
  upsampled by MATLAB bicubic (``imresize``) inside the block, restored, and the
  halo (s times larger) cropped, so output chunks are s times larger. The
  halo is ``ceil(radius / s) + 3`` low-resolution pixels: it covers the bicubic
  support (2 pixels, plus the block-edge mirror) and the receptive field.
* stack axes (T, Z, ...) get chunk 1 and no halo; planes are independent.
  Channels are one chunk and handled like ``restore`` does: RGB(A) through
  the luma (Y of YCbCr), other channels one by one.

Intensities are normalised GLOBALLY, never per block (that would make seams);
how, and the chunk grid, the halo and the ``BlockPlan`` every block gets,
are decided in ``napari_memnet.restoration.lazy.plan`` (its public names are importable
from here too). Pass ``normalization=(low, high)`` to fix the map yourself.

This module runs the plan: the block function (``restore_block``), the graph
(``restore_dask``), and its computation. A small LRU cache of computed output
blocks (``BlockCache``) makes revisiting a plane in napari free
(``_widgets/lazy_layer.py``). ``compute_iter`` and ``restore_dask_iter`` run a
whole lazy result with progress and cancellation; their final
``RestoreResult`` names the device, precision and tile size the blocks
actually ran with (resolved, like ``inference.restore_iter``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import numpy as np

from .schedulers import get_engine, iter_blocks, model_spec
from ...core.intensity import output_dtype
from .plan import (  # re-exported (listed in __all__): the plan's public names live in lazy_plan
    CPU_CHUNK,
    GPU_CHUNK,
    PERCENTILES,
    BlockPlan,
    Normalization,
    as_dask,
    channel_normalizations,
    choose_chunks,
    global_normalization,
    halo_for,
    is_dask_array,
    is_lazy_input,
    parse_axes,
    sample_intensity,
)

__all__ = [
    "CPU_CHUNK",
    "GPU_CHUNK",
    "PERCENTILES",
    "Normalization",
    "BlockCache",
    "BlockPlan",
    "block_cache",
    "is_dask_array",
    "as_dask",
    "parse_axes",
    "choose_chunks",
    "halo_for",
    "sample_intensity",
    "global_normalization",
    "channel_normalizations",
    "engine_settings",
    "restore_block",
    "restore_dask",
    "compute_iter",
    "restore_dask_iter",
    "is_lazy_input",
    "compute",
    "plan_of",
    "model_calls",
]


# ------------------------------------------------------------------ block cache
class BlockCache:
    """A thread-safe LRU of computed output blocks, bounded in bytes."""

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key, value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._data[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and self._data:
                _, dropped = self._data.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)


block_cache = BlockCache()
_CALLS: dict[str, list] = {}
_CALLS_LOCK = threading.Lock()
_PLANS: OrderedDict = OrderedDict()  # token -> BlockPlan of the latest results
_KEEP_PLANS = 64


def model_calls(result_or_token) -> list[tuple[int, ...]]:
    """Chunk locations of the blocks this process ran the model on for a lazy
    result (cache hits excluded), in call order. For diagnostics and tests."""
    token = getattr(result_or_token, "name", result_or_token)
    with _CALLS_LOCK:
        return list(_CALLS.get(_token_of_name(token), []))


def _token_of_name(name: str) -> str:
    return name.rsplit("-", 1)[-1] if name.startswith("memnet-") else name


# ------------------------------------------------------------------ the block function

def _restore_block(block: np.ndarray, plan: BlockPlan, block_info=None) -> np.ndarray:
    info = block_info[0]
    loc = tuple(info["chunk-location"])
    key = (plan.token, loc)
    if plan.use_cache:
        hit = block_cache.get(key)
        if hit is not None:
            return hit
    out = restore_block(block, plan, loc, tuple(info["num-chunks"]))
    with _CALLS_LOCK:
        _CALLS.setdefault(plan.token, []).append(loc)
    if plan.use_cache:
        block_cache.put(key, out)
    return out


def restore_block(block: np.ndarray, plan: BlockPlan, loc: tuple, numblocks: tuple) -> np.ndarray:
    """Restore one overlapped block (halo included where it has neighbours)
    and return the output block without the halo.

    Like ``inference.restore_iter``: planes of the stack one by one; RGB(A)
    through the luma (Y of YCbCr) with the chroma carried (bicubic-upsampled
    for SR) and alpha left alone; other channels one by one, each with its
    own (global) intensity map."""
    axes, s, halo = plan.axes, plan.scale, plan.halo
    iy, ix = axes.index("Y"), axes.index("X")
    ic = axes.index("C") if "C" in axes else None
    cuts = {}
    for i in (iy, ix):
        before = halo if loc[i] > 0 else 0
        after = halo if loc[i] < numblocks[i] - 1 else 0
        cuts[i] = slice(before * s, (block.shape[i] - after) * s)
    crop = (cuts[iy], cuts[ix])
    engine = get_engine(plan.spec, plan.device, plan.precision, plan.tile_size)
    stack = [i for i in range(len(axes)) if i not in (iy, ix, ic)]
    order = stack + [iy, ix] + ([ic] if ic is not None else [])
    view = np.transpose(block, order)  # (stack..., Y, X[, C])
    n_stack = len(stack)
    out_plane = tuple(c.stop - c.start for c in crop)
    out = np.empty(view.shape[:n_stack] + out_plane + view.shape[n_stack + 2:], dtype=np.dtype(plan.out_dtype))
    for idx in np.ndindex(*view.shape[:n_stack]):
        src = view[idx]
        if ic is None:
            norm = plan.norms[0]
            out[idx] = norm.inverse(_run(engine, _upsample(norm.forward(src), s))[crop], plan.out_dtype)
        elif plan.rgb:
            out[idx] = _restore_rgb(engine, src, plan, crop)
        else:
            for k, norm in enumerate(plan.norms):
                restored = _run(engine, _upsample(norm.forward(src[..., k]), s))[crop]
                out[idx][..., k] = norm.inverse(restored, plan.out_dtype)
    return np.ascontiguousarray(np.transpose(out, np.argsort(order)))


def _restore_rgb(engine, src: np.ndarray, plan: BlockPlan, crop: tuple) -> np.ndarray:
    from ...core.color import rgb_to_ycbcr, ycbcr_to_rgb
    from ...core.intensity import cast_output

    s, norm = plan.scale, plan.norms[0]
    ycc = np.asarray(rgb_to_ycbcr(norm.forward(src[..., :3])), dtype=np.float32)
    if s > 1:
        ycc = np.moveaxis(_upsample(np.moveaxis(ycc, -1, 0), s), 0, -1)
    restored = _run(engine, np.ascontiguousarray(ycc[..., 0]))
    ycc = ycc[crop].copy()
    ycc[..., 0] = restored[crop]
    out = np.empty(ycc.shape[:2] + (src.shape[-1],), dtype=np.dtype(plan.out_dtype))
    out[..., :3] = norm.inverse(np.asarray(ycbcr_to_rgb(ycc), dtype=np.float32), plan.out_dtype)
    if src.shape[-1] == 4:
        alpha = src[..., 3]
        if s > 1:
            alpha = cast_output(_upsample(np.asarray(alpha, dtype=np.float32), s), plan.out_dtype)
        out[..., 3] = alpha[crop]
    return out


def _upsample(values: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB bicubic upsampling of the last two axes by an integer ``scale``."""
    if scale == 1:
        return values
    from ...core.imresize import imresize

    h, w = values.shape[-2:]
    return np.asarray(imresize(values, output_shape=(h * scale, w * scale)), dtype=np.float32)


def _run(engine, plane: np.ndarray) -> np.ndarray:
    """One float32 plane (0..1) through the cached engine (tiled inside if large)."""
    out = np.empty(plane.shape, dtype=np.float32)
    for _ in engine.run_plane(np.ascontiguousarray(plane, dtype=np.float32), out):
        pass
    return out


# ------------------------------------------------------------------ public entry points

def restore_dask(image, task: str, *, scale=None, model=None, axes: str | None = None, device: str = "auto",
                 precision: str = "auto", tile_size=None, chunks=None, scheduler=None, normalization=None,
                 cache: bool = True):
    """Lazily restore a dask (or zarr/numpy) array; returns a dask array.

    Nothing is computed except the intensity sample for non-uint8 data (on the
    local threads; ``scheduler`` is only validated here: pass it to
    ``compute`` / ``compute_iter`` / ``zarr_io.restore_to_zarr``, which run
    the blocks). ``axes`` as for ``restore`` (RGB(A) through the luma, other
    channels one by one, each with its own global intensity map). Output
    chunks are the input chunks (``choose_chunks``), times ``scale`` along Y/X
    for super-resolution. ``cache`` keeps computed blocks in the process-wide
    LRU ``block_cache`` (for interactive viewing). ``tile_size`` is the
    engine's tile inside a block (None: from memory). A model given by name
    or file travels to workers as its path; an in-memory network as its
    weights (bytes)."""
    import dask.array as da
    from dask.base import tokenize

    from .schedulers import normalize_scheduler
    from ..eager import check_task

    task, s = check_task(task, scale)
    normalize_scheduler(scheduler)
    arr = as_dask(image)
    if np.dtype(arr.dtype).kind not in "uif":
        raise ValueError(f"expected an integer or floating-point image, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"the image is empty (shape {arr.shape})")
    axes, rgb = parse_axes(axes, arr.shape)
    spec = model_spec(model, task=task)
    if spec.task and spec.task != task:
        raise ValueError(f"model {spec.name!r} was made for task {spec.task!r}, not {task!r}")
    if spec.in_channels != 1:
        raise ValueError(f"model {spec.name!r} takes {spec.in_channels} channels; lazy restoration needs a gray model")
    halo = halo_for(spec.receptive_radius, s, spec.alignment)
    norms = channel_normalizations(arr, axes, rgb, normalization, scheduler=scheduler)
    arr = arr.rechunk(choose_chunks(arr.shape, axes, halo, device=device, chunks=chunks, align=spec.alignment))
    out_chunks = tuple(tuple(c * s for c in cs) if ax in "YX" else cs for ax, cs in zip(axes, arr.chunks))
    out_dtype = output_dtype(arr.dtype)
    if tile_size is not None and (isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer))
                                  or tile_size < 1):
        raise ValueError(f"tile_size must be a positive integer (pixels) or None, got {tile_size!r}")
    token = tokenize(arr.name, spec.key, task, s, axes, norms, out_dtype.str, device, precision, tile_size)
    plan = BlockPlan(spec, task, s, axes, halo, norms, rgb, out_dtype.str, device, precision, token, bool(cache),
                     tile_size)
    _PLANS[token] = plan
    while len(_PLANS) > _KEEP_PLANS:
        old, _ = _PLANS.popitem(last=False)
        with _CALLS_LOCK:
            _CALLS.pop(old, None)
    # no overlap along stack axes, nor along a Y/X axis that is one chunk (it may be shorter than the halo)
    depth = {i: (halo if ax in "YX" and len(arr.chunks[i]) > 1 else 0) for i, ax in enumerate(axes)}
    return da.map_overlap(_restore_block, arr, depth=depth, boundary="none", trim=False, chunks=out_chunks,
                          dtype=out_dtype, plan=plan, name=f"memnet-{task}-{token}",
                          meta=np.empty((0,) * arr.ndim, out_dtype))


def compute_iter(result, *, scheduler=None, cancel=None):
    """Compute a lazy result block by block: yields one ``TileProgress`` per
    finished block (``done``/``total`` blocks) and finally a ``RestoreResult``
    holding the numpy array, like ``inference.restore_iter``. ``cancel``
    (threading.Event) stops between blocks with ``Cancelled``; a failing block
    raises ``distributed.BlockError`` naming it."""
    from ..eager import RestoreResult, TileProgress

    start = time.perf_counter()
    out = np.empty(result.shape, dtype=result.dtype)
    slices = _block_slices(result.chunks)
    total = len(slices)
    items = ((loc, result.blocks[loc]) for loc in slices)
    done = 0
    for loc, value in iter_blocks(items, scheduler, cancel=cancel):
        out[slices[loc]] = value
        done += 1
        elapsed = time.perf_counter() - start
        yield TileProgress(done, total, elapsed, elapsed / done * (total - done))
    plan = plan_of(result)
    device, precision, tile = engine_settings(plan, scheduler) if plan else ("", "", 0)
    yield RestoreResult(data=out, model_name=plan.spec.name if plan else "", device=device, precision=precision,
                        tile_size=tile, seconds=time.perf_counter() - start, task=plan.task if plan else None,
                        scale=plan.scale if plan else 1, axes=plan.axes if plan else "")


def engine_settings(plan: BlockPlan, scheduler=None) -> tuple[str, str, int]:
    """``(device, precision, tile_size)`` the blocks of ``plan`` ran with,
    resolved ("cpu", "fp32", 1024), not the request ("auto").

    Local schedulers: the engine this process built for the plan (the one
    ``restore_block`` uses, from ``distributed.get_engine``'s cache; built
    here only if that cache was cleared since). A dask.distributed cluster:
    the engines its workers built, asked with ``Client.run``; workers that
    resolved differently are joined with commas (e.g. "cuda:0,cpu") and the
    smallest tile is given; when no worker has one (they left the cluster),
    the request is reported as given."""
    from .schedulers import normalize_scheduler, scheduler_client

    if normalize_scheduler(scheduler) in ("threads", "synchronous"):
        engine = get_engine(plan.spec, plan.device, plan.precision, plan.tile_size)
        return str(engine.device), engine.precision, int(engine.tile)
    with scheduler_client(scheduler) as (_, client):
        found = client.run(_worker_engine_settings, plan.spec.key, plan.device, plan.precision, plan.tile_size)
    seen = sorted({v for v in found.values() if v is not None})
    if not seen:
        return str(plan.device), str(plan.precision), int(plan.tile_size or 0)
    join = lambda i: ",".join(dict.fromkeys(str(v[i]) for v in seen))  # noqa: E731
    return join(0), join(1), min(int(v[2]) for v in seen)


def _worker_engine_settings(key: str, device: str, precision: str, tile_size) -> tuple | None:
    """On a worker: (device, precision, tile) of its cached engine for the plan, or None."""
    from . import schedulers as distributed

    engine = distributed._ENGINES.get((key, str(device), str(precision), tile_size))
    return None if engine is None else (str(engine.device), engine.precision, int(engine.tile))


def restore_dask_iter(image, task: str, *, scale=None, model=None, axes=None, device="auto", precision="auto",
                      tile_size=None, progress=None, cancel=None, chunks=None, scheduler=None, normalization=None):
    """``inference.restore_iter`` for a dask/zarr image: the same arguments and
    the same events (``TileProgress`` per block, then ``RestoreResult``), with
    the blocks restored lazily and exactly (``restore_dask``) and computed on
    ``scheduler``. ``progress(done, total)`` is called per block too."""
    result = restore_dask(image, task, scale=scale, model=model, axes=axes, device=device, precision=precision,
                          tile_size=tile_size, chunks=chunks, scheduler=scheduler, normalization=normalization,
                          cache=False)
    for event in compute_iter(result, scheduler=scheduler, cancel=cancel):
        if progress is not None and hasattr(event, "done"):
            progress(event.done, event.total)
        yield event



def compute(result, *, scheduler=None, progress=None, cancel=None) -> np.ndarray:
    """``compute_iter`` to the end; ``progress(event)`` gets each TileProgress."""
    data = None
    for event in compute_iter(result, scheduler=scheduler, cancel=cancel):
        if hasattr(event, "data"):
            data = event.data
        elif progress is not None:
            progress(event)
    return data


def _block_slices(chunks) -> dict:
    """``{chunk_location: tuple_of_slices}`` for a chunks tuple."""
    import itertools

    bounds = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in chunks]
    out = {}
    for loc in itertools.product(*(range(len(c)) for c in chunks)):
        out[loc] = tuple(slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, loc))
    return out


def plan_of(result) -> BlockPlan | None:
    """The ``BlockPlan`` behind a result of ``restore_dask`` (None for others)."""
    return _PLANS.get(_token_of_name(getattr(result, "name", "")))
