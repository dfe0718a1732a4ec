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
  upsampled inside the block, restored, and the halo (s times larger)
  cropped, so output chunks are s times larger. The halo is
  ``ceil(radius / s) + 3`` low-resolution pixels: it covers the bicubic
  support (2 pixels, plus the block-edge mirror) and the receptive field.
* stack axes (T, Z, ...) get chunk 1 and no halo; planes are independent.
  Channels are one chunk.

Every plane of a block goes through ``restoration.pipeline.restore_item``,
the same per-plane path as the eager ``restore`` (RGB(A) through the luma,
other channels one by one). Intensities are normalised GLOBALLY, never per
block (that would make seams); that, the chunk grid, the halo and the
``BlockPlan`` every block gets are decided in ``plan``. Pass
``normalization=(low, high)`` to fix the map yourself.

The engine of a block comes from the process's ``restoration.cache.ENGINES``;
restored blocks go to its LRU ``BLOCKS`` (``cache=True``), so revisiting a
plane in napari is free. ``compute_iter`` and ``restore_dask_iter`` run a
whole lazy result with progress and cancellation; their final
``RestoreResult`` names the device, precision and tile size the blocks
actually ran with (resolved, like the eager ``restore_iter``).
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from ...core.intensity import output_dtype
from ...core.tasks import check_task
from ...models.spec import model_spec
from ..cache import BLOCKS, ENGINES
from ..engine import EngineSettings
from ..events import RestoreResult, TileProgress
from ..pipeline import check_dtype, restore_item
from .plan import BlockPlan, as_dask, axes_letters, channel_normalizations, choose_chunks, halo_for
from .schedulers import iter_blocks, normalize_scheduler, scheduler_client

__all__ = ["block_slices", "compute", "compute_iter", "engine_settings", "plan_of", "restore_block",
           "restore_dask", "restore_dask_iter"]


# ------------------------------------------------------------------ the block function
def _restore_block(block: np.ndarray, plan: BlockPlan, block_info=None) -> np.ndarray:
    info = block_info[0]
    loc = tuple(info["chunk-location"])
    key = (plan.token, loc)
    if plan.use_cache:
        hit = BLOCKS.get(key)
        if hit is not None:
            return hit
    out = restore_block(block, plan, loc, tuple(info["num-chunks"]))
    if plan.use_cache:
        BLOCKS.put(key, out)
    return out


def restore_block(block: np.ndarray, plan: BlockPlan, loc: tuple, numblocks: tuple) -> np.ndarray:
    """Restore one overlapped block (halo included where it has neighbours)
    and return the output block without the halo: every plane of the stack
    through ``pipeline.restore_item``, the crop dropping the halo."""
    axes, s, halo = plan.axes, plan.scale, plan.halo
    iy, ix = axes.index("Y"), axes.index("X")
    ic = axes.index("C") if "C" in axes else None
    cuts = {}
    for i in (iy, ix):
        before = halo if loc[i] > 0 else 0
        after = halo if loc[i] < numblocks[i] - 1 else 0
        cuts[i] = slice(before * s, (block.shape[i] - after) * s)
    crop = (cuts[iy], cuts[ix])
    runner = ENGINES.engine(plan.spec, plan.settings).runner()
    stack = [i for i in range(len(axes)) if i not in (iy, ix, ic)]
    order = stack + [iy, ix] + ([ic] if ic is not None else [])
    view = np.transpose(block, order)  # (stack..., Y, X[, C])
    n_stack = len(stack)
    out_plane = tuple(c.stop - c.start for c in crop)
    out = np.empty(view.shape[:n_stack] + out_plane + view.shape[n_stack + 2:], dtype=np.dtype(plan.out_dtype))
    for idx in np.ndindex(*view.shape[:n_stack]):
        for _ in restore_item(view[idx], out[idx], plan.norms, runner, rgb=plan.rgb, scale=s, crop=crop):
            pass
    return np.ascontiguousarray(np.transpose(out, np.argsort(order)))


# ------------------------------------------------------------------ public entry points
def restore_dask(image, task: str, *, scale=None, model=None, axes: str | None = None, device: str = "auto",
                 precision: str = "auto", tile_size=None, chunks=None, scheduler=None, normalization=None,
                 cache: bool = True, ensemble: int = 1):
    """Lazily restore a dask (or zarr/numpy) array; returns a dask array.

    Nothing is computed except the intensity sample for non-uint8 data (on the
    local threads; ``scheduler`` is only validated here: pass it to
    ``compute`` / ``compute_iter`` / ``zarr_io.restore_to_zarr``, which run
    the blocks). ``axes`` as for ``restore`` (RGB(A) through the luma, other
    channels one by one, each with its own global intensity map). Output
    chunks are the input chunks (``choose_chunks``), times ``scale`` along Y/X
    for super-resolution. ``cache`` keeps computed blocks in the process-wide
    LRU ``restoration.cache.BLOCKS`` (for interactive viewing). ``tile_size`` is the
    engine's tile inside a block (None: from memory). A model given by name
    or file travels to workers as its path; an in-memory network as its
    weights (bytes). ``ensemble`` as for ``restore``."""
    import dask.array as da
    from dask.base import tokenize

    task, s = check_task(task, scale)
    settings = EngineSettings(device, precision, tile_size, ensemble)
    normalize_scheduler(scheduler)
    arr = as_dask(image)
    check_dtype(arr.dtype)
    if arr.size == 0:
        raise ValueError(f"the image is empty (shape {arr.shape})")
    axes, rgb = axes_letters(axes, arr.shape)
    spec = model_spec(model, task=task, device=settings.device)
    if spec.task and spec.task != task:
        raise ValueError(f"model {spec.name!r} was made for task {spec.task!r}, not {task!r}")
    if spec.in_channels != 1:
        raise ValueError(f"model {spec.name!r} takes {spec.in_channels} channels; lazy restoration needs a gray model")
    halo = halo_for(spec.receptive_radius, s, spec.alignment)
    norms = channel_normalizations(arr, axes, rgb, normalization, scheduler=scheduler)
    arr = arr.rechunk(choose_chunks(arr.shape, axes, halo, device=settings.device, chunks=chunks, align=spec.alignment))
    out_chunks = tuple(tuple(c * s for c in cs) if ax in "YX" else cs for ax, cs in zip(axes, arr.chunks))
    out_dtype = output_dtype(arr.dtype)
    token = tokenize(arr.name, spec.key, task, s, axes, norms, out_dtype.str, settings.as_tuple())
    plan = BlockPlan(spec, task, s, axes, halo, norms, rgb, out_dtype.str, settings, token, bool(cache))
    # no overlap along stack axes, nor along a Y/X axis that is one chunk (it may be shorter than the halo)
    depth = {i: (halo if ax in "YX" and len(arr.chunks[i]) > 1 else 0) for i, ax in enumerate(axes)}
    result = da.map_overlap(_restore_block, arr, depth=depth, boundary="none", trim=False, chunks=out_chunks,
                            dtype=out_dtype, plan=plan, name=f"memnet-{task}-{token}",
                            meta=np.empty((0,) * arr.ndim, out_dtype))
    result.memnet_plan = plan  # read by plan_of: the plan travels with the result, not in a table
    return result


def compute_iter(result, *, scheduler=None, cancel=None):
    """Compute a lazy result block by block: yields one ``TileProgress`` per
    finished block (``done``/``total`` blocks) and finally a ``RestoreResult``
    holding the numpy array, like the eager ``restore_iter``. ``cancel``
    (threading.Event) stops between blocks with ``Cancelled``; a failing block
    raises ``schedulers.BlockError`` naming it."""
    start = time.perf_counter()
    out = np.empty(result.shape, dtype=result.dtype)
    slices = block_slices(result.chunks)
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
                        scale=plan.scale if plan else 1, axes=plan.axes if plan else "",
                        ensemble=plan.settings.ensemble if plan else 1)


def engine_settings(plan: BlockPlan, scheduler=None) -> tuple[str, str, int]:
    """``(device, precision, tile_size)`` the blocks of ``plan`` ran with,
    resolved ("cpu", "fp32", 1024), not the request ("auto").

    Local schedulers: the engine this process built for the plan (the one
    ``restore_block`` uses, from ``restoration.cache.ENGINES``; built
    here only if that cache was cleared since). A dask.distributed cluster:
    the engines its workers built, asked with ``Client.run``; workers that
    resolved differently are joined with commas (e.g. "cuda:0,cpu") and the
    smallest tile is given; when no worker has one (they left the cluster),
    the request is reported as given."""
    if normalize_scheduler(scheduler) in ("threads", "synchronous"):
        engine = ENGINES.engine(plan.spec, plan.settings)
        return str(engine.device), engine.precision, int(engine.tile)
    with scheduler_client(scheduler) as (_, client):
        found = client.run(_worker_engine_settings, plan.spec.key, plan.settings)
    seen = sorted({v for v in found.values() if v is not None})
    if not seen:
        asked = plan.settings
        return asked.device, asked.precision, int(asked.tile_size or 0)
    join = lambda i: ",".join(dict.fromkeys(str(v[i]) for v in seen))  # noqa: E731
    return join(0), join(1), min(int(v[2]) for v in seen)


def _worker_engine_settings(key: str, settings: EngineSettings) -> tuple | None:
    """On a worker: (device, precision, tile) of its cached engine for the plan, or None."""
    engine = ENGINES.find(key, settings)
    return None if engine is None else (str(engine.device), engine.precision, int(engine.tile))


def restore_dask_iter(image, task: str, *, scale=None, model=None, axes=None, device="auto", precision="auto",
                      tile_size=None, progress=None, cancel=None, chunks=None, scheduler=None, normalization=None,
                      ensemble: int = 1):
    """The eager ``restore_iter`` for a dask/zarr image: the same arguments and
    the same events (``TileProgress`` per block, then ``RestoreResult``), with
    the blocks restored lazily and exactly (``restore_dask``) and computed on
    ``scheduler``. ``progress(done, total)`` is called per block too."""
    result = restore_dask(image, task, scale=scale, model=model, axes=axes, device=device, precision=precision,
                          tile_size=tile_size, chunks=chunks, scheduler=scheduler, normalization=normalization,
                          cache=False, ensemble=ensemble)
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


def block_slices(chunks) -> dict:
    """``{chunk_location: tuple_of_slices}`` for a chunks tuple."""
    bounds = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in chunks]
    out = {}
    for loc in itertools.product(*(range(len(c)) for c in chunks)):
        out[loc] = tuple(slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, loc))
    return out


def plan_of(result) -> BlockPlan | None:
    """The ``BlockPlan`` behind a result of ``restore_dask`` (None for others)."""
    return getattr(result, "memnet_plan", None)
