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

Intensities are normalised GLOBALLY, never per block (that would make seams):
uint8 is divided by 255; other data follows ``intensity.choose_intensity``
(8-bit-range data /255, float 0..1 as is, else the 0.1/99.9 percentiles)
evaluated on a bounded sample (``sample_intensity``: up to 32 chunks spread
over the array, strided to at most 65536 values each). Pass
``normalization=(low, high)`` to fix the map yourself.

A small LRU cache of computed output blocks (``BlockCache``) makes revisiting
a plane in napari free (``_widgets/lazy_layer.py``). ``compute_iter`` and
``restore_dask_iter`` run a whole lazy result with progress and cancellation.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .distributed import ModelSpec, get_engine, iter_blocks, model_spec
from .intensity import DEFAULT_PERCENTILES, Intensity, choose_intensity, output_dtype

__all__ = [
    "Normalization",
    "BlockCache",
    "block_cache",
    "is_dask_array",
    "as_dask",
    "parse_axes",
    "choose_chunks",
    "sample_intensity",
    "restore_dask",
    "compute_iter",
    "restore_dask_iter",
    "is_lazy_input",
    "compute",
    "plan_of",
    "model_calls",
]

CPU_CHUNK = 1024
GPU_CHUNK = 2048
PERCENTILES = DEFAULT_PERCENTILES


# ------------------------------------------------------------------ intensity
def Normalization(low: float, high: float) -> Intensity:  # noqa: N802 (reads like the class it builds)
    """A fixed ``Intensity`` map ``low..high -> 0..1`` (checked: finite, low < high)."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError(f"normalization needs finite low < high, got ({low}, {high})")
    return Intensity("given", low, high)


def sample_intensity(arr, *, max_chunks: int = 32, per_chunk: int = 65536, scheduler=None) -> np.ndarray:
    """A bounded, deterministic sample of a dask array's finite values (1-D, its dtype).

    Reads at most ``max_chunks`` chunks spread evenly over the chunk grid and
    takes a regular stride inside each (at most ``per_chunk`` values), so the
    cost does not grow with the array."""
    import dask

    grid = arr.numblocks
    total = int(np.prod(grid))
    picks = np.unique(np.linspace(0, total - 1, num=min(max_chunks, total)).round().astype(int))
    parts = []
    for flat in picks:
        block = arr.blocks[np.unravel_index(int(flat), grid)]
        step = max(1, int(math.ceil((block.size / per_chunk) ** (1.0 / max(1, block.ndim)))))
        parts.append(block[(slice(None, None, step),) * block.ndim].ravel())
    values = dask.compute(*parts, scheduler=_local_name(scheduler))
    sample = np.concatenate([np.asarray(v).ravel() for v in values])
    return sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample


def _local_name(scheduler) -> str:
    """The sample is tiny: compute it locally (threads) unless asked for sync."""
    return "synchronous" if scheduler in ("synchronous", "sync") else "threads"


def global_normalization(arr, normalization=None, *, scheduler=None) -> Intensity:
    """The one ``intensity.Intensity`` map used for every block of ``arr``.

    ``normalization``: None (automatic), ``(low, high)`` or an ``Intensity``.
    Automatic follows ``intensity.choose_intensity`` (uint8 and 8-bit-range
    data /255, float 0..1 as is, others the 0.1/99.9 percentiles) applied to
    the bounded ``sample_intensity`` sample instead of the whole array, so
    the range tests and percentiles are those of the sample."""
    if isinstance(normalization, Intensity):
        return normalization
    if normalization is not None:
        try:
            low, high = (float(v) for v in normalization)
        except (TypeError, ValueError):
            raise ValueError(f"normalization must be (low, high), got {normalization!r}") from None
        return Normalization(low, high)
    if np.dtype(arr.dtype) == np.uint8:
        return Intensity("8bit", 0.0, 255.0)
    sample = sample_intensity(arr, scheduler=scheduler)
    if sample.size == 0:
        raise ValueError("cannot normalise the image: it has no finite values")
    return choose_intensity(sample, PERCENTILES)


def channel_normalizations(arr, axes: str, rgb: bool, normalization=None, *, scheduler=None) -> tuple:
    """The global intensity maps of an image: one for a gray image or the RGB
    channels together (alpha excluded), one per channel otherwise (as
    ``restore`` does). ``normalization`` (low, high) applies to all."""
    if "C" not in axes:
        return (global_normalization(arr, normalization, scheduler=scheduler),)
    c = axes.index("C")
    if rgb:
        rgb_part = arr[(slice(None),) * c + (slice(0, 3),)]
        return (global_normalization(rgb_part, normalization, scheduler=scheduler),)
    return tuple(global_normalization(arr[(slice(None),) * c + (k,)], normalization, scheduler=scheduler)
                 for k in range(arr.shape[c]))


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


# ------------------------------------------------------------------ axes and chunks
def is_dask_array(obj) -> bool:
    return type(obj).__module__.startswith("dask.array") and hasattr(obj, "chunks") and hasattr(obj, "dask")


def as_dask(image, chunks=None):
    """A dask array view of a dask array, a zarr array or a numpy array."""
    import dask.array as da

    if is_dask_array(image):
        return image
    if type(image).__module__.startswith("zarr"):
        return da.from_zarr(image)
    if isinstance(image, np.ndarray):
        return da.from_array(image, chunks=chunks or "auto")
    raise ValueError(f"expected a dask, zarr or numpy array, got {type(image).__name__}")


def parse_axes(axes: str | None, shape: tuple) -> tuple[str, bool]:
    """``(axes, is_rgb)``: the axes letters of an image, checked by
    ``napari_memnet.axes`` (same defaults as ``restore``), with the channel
    letter written ``C``; ``is_rgb`` for a trailing channel axis of 3 or 4."""
    from .axes import parse_axes as parse_layout

    layout = parse_layout(axes, tuple(shape))
    letters = list(layout.axes)
    if layout.channel is not None:
        letters[layout.channel] = "C"
    return "".join(letters), layout.is_rgb


def _default_yx_chunk(device: str) -> int:
    try:
        from .devices import resolve_device

        kind = resolve_device(device).type
    except Exception:  # devices unavailable: plan for the CPU
        kind = "cpu"
    return CPU_CHUNK if kind == "cpu" else GPU_CHUNK


def choose_chunks(shape: tuple, axes: str, halo: int, *, device: str = "auto", chunks=None) -> tuple:
    """Input chunks: ``chunks`` (int for Y/X, or a tuple/dict per axis) or the
    default (1024 px on CPU, 2048 on GPU, along Y/X; 1 along stack axes; all
    channels together). The grid is regular (all chunks equal but the last),
    so it maps onto a zarr chunk grid; no Y/X chunk is smaller than the halo
    (dask's overlap needs it): the size grows by a few pixels when the last
    chunk would be too short."""
    if chunks is None:
        yx = _default_yx_chunk(device)
        wanted = {ax: (yx if ax in "YX" else (n if ax == "C" else 1)) for ax, n in zip(axes, shape)}
    elif isinstance(chunks, int):
        wanted = {ax: (chunks if ax in "YX" else (n if ax == "C" else 1)) for ax, n in zip(axes, shape)}
    elif isinstance(chunks, dict):
        wanted = {ax: chunks.get(ax, chunks.get(i, n if ax in "YXC" else 1))
                  for i, (ax, n) in enumerate(zip(axes, shape))}
    else:
        chunks = tuple(chunks)
        if len(chunks) != len(shape):
            raise ValueError(f"chunks {chunks} must have one entry per dimension of {shape}")
        wanted = dict(zip(axes, chunks))
    out = []
    for ax, n in zip(axes, shape):
        size = wanted[ax]
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"chunk size along {ax} must be a positive integer, got {size!r}")
        size = min(int(size), n)
        if ax == "C" and size != n:
            raise ValueError("the channel axis C must be one chunk")
        if ax in "YX":
            size = max(size, min(n, halo))
            while n % size and n % size < halo:  # keep the grid regular, the last chunk >= halo
                size += 1
            out.append(tuple([size] * (n // size) + ([n % size] if n % size else [])))
        else:
            out.append(tuple([size] * (n // size) + ([n % size] if n % size else [])))
    return tuple(out)


# ------------------------------------------------------------------ the block function
@dataclass(frozen=True)
class BlockPlan:
    """Everything one block needs; small and picklable (sent to workers)."""

    spec: ModelSpec
    task: str
    scale: int
    axes: str
    halo: int
    norms: tuple  # one Intensity (gray, RGB) or one per independent channel
    rgb: bool
    out_dtype: str
    device: str
    precision: str
    token: str
    use_cache: bool = field(default=True)
    tile_size: int | None = None


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
    from .color import rgb_to_ycbcr, ycbcr_to_rgb
    from .intensity import cast_output

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
    from .imresize import imresize

    h, w = values.shape[-2:]
    return np.asarray(imresize(values, output_shape=(h * scale, w * scale)), dtype=np.float32)


def _run(engine, plane: np.ndarray) -> np.ndarray:
    """One float32 plane (0..1) through the cached engine (tiled inside if large)."""
    out = np.empty(plane.shape, dtype=np.float32)
    for _ in engine.run_plane(np.ascontiguousarray(plane, dtype=np.float32), out):
        pass
    return out


# ------------------------------------------------------------------ public entry points
def halo_for(radius: int, scale: int) -> int:
    """Y/X halo in input pixels for a model of receptive radius ``radius``."""
    if scale == 1:
        return int(radius)
    return int(math.ceil(radius / scale)) + 3


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

    from .distributed import normalize_scheduler
    from .inference import check_task

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
    halo = halo_for(spec.receptive_radius, s)
    norms = channel_normalizations(arr, axes, rgb, normalization, scheduler=scheduler)
    arr = arr.rechunk(choose_chunks(arr.shape, axes, halo, device=device, chunks=chunks))
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
    from .inference import RestoreResult, TileProgress

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
    yield RestoreResult(data=out, model_name=plan.spec.name if plan else "", device=plan.device if plan else "",
                        precision=plan.precision if plan else "", tile_size=(plan.tile_size or 0) if plan else 0,
                        seconds=time.perf_counter() - start, task=plan.task if plan else None,
                        scale=plan.scale if plan else 1, axes=plan.axes if plan else "")


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


def is_lazy_input(image) -> bool:
    """True for a dask array or a zarr array (what ``restore`` hands to this module)."""
    return is_dask_array(image) or (type(image).__module__.startswith("zarr") and hasattr(image, "chunks"))


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
