"""Planning a lazy restoration: everything decided BEFORE any block runs.

``napari_memnet.restoration.lazy.graph`` builds and runs the dask graph; this module holds the
decisions it is built from, all cheap and free of model execution:

* input kinds: ``is_dask_array``, ``is_lazy_input``, ``as_dask`` (dask, zarr
  or numpy to a dask array);
* axes: ``axes_letters`` (the same defaults as ``restore``, channel written C);
* the chunk grid: ``choose_chunks`` (1024 px on CPU, 2048 on GPU along Y/X,
  1 along stack axes, all channels together; regular, no Y/X chunk shorter
  than the halo) and the halo itself, ``halo_for`` (the receptive radius, or
  ``ceil(radius / s) + 3`` low-resolution pixels for super-resolution);
* GLOBAL intensity maps, never per block (that would make seams):
  ``global_normalization`` / ``channel_normalizations`` follow
  ``intensity.choose_intensity`` on a bounded sample (``sample_intensity``:
  up to 32 chunks spread over the array, strided to at most 65536 values
  each), or a fixed ``Normalization(low, high)``;
* ``BlockPlan``: the small, picklable description every block receives.

Nothing here runs the model; ``graph`` builds the dask graph from a plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...models.spec import ModelSpec
from ...core.intensity import DEFAULT_PERCENTILES, Intensity, choose_intensity
from ..engine import EngineSettings

__all__ = [
    "CPU_CHUNK",
    "GPU_CHUNK",
    "PERCENTILES",
    "BlockPlan",
    "Normalization",
    "as_dask",
    "channel_normalizations",
    "choose_chunks",
    "global_normalization",
    "halo_for",
    "is_dask_array",
    "is_lazy_input",
    "axes_letters",
    "sample_intensity",
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


# ------------------------------------------------------------------ input kinds, axes and chunks
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


def axes_letters(axes: str | None, shape: tuple) -> tuple[str, bool]:
    """``(axes, is_rgb)``: the axes letters of an image, checked by
    ``napari_memnet.core.axes`` (same defaults as ``restore``), with the channel
    letter written ``C``; ``is_rgb`` for a trailing channel axis of 3 or 4."""
    from ...core.axes import parse_axes as parse_layout

    layout = parse_layout(axes, tuple(shape))
    letters = list(layout.axes)
    if layout.channel is not None:
        letters[layout.channel] = "C"
    return "".join(letters), layout.is_rgb


def _default_yx_chunk(device: str) -> int:
    try:
        from ...core.devices import resolve_device

        kind = resolve_device(device).type
    except Exception:  # devices unavailable: plan for the CPU
        kind = "cpu"
    return CPU_CHUNK if kind == "cpu" else GPU_CHUNK


def choose_chunks(shape: tuple, axes: str, halo: int, *, device: str = "auto", chunks=None,
                  align: int = 1) -> tuple:
    """Input chunks: ``chunks`` (int for Y/X, or a tuple/dict per axis) or the
    default (1024 px on CPU, 2048 on GPU, along Y/X; 1 along stack axes; all
    channels together). The grid is regular (all chunks equal but the last),
    so it maps onto a zarr chunk grid; no Y/X chunk is smaller than the halo
    (dask's overlap needs it): the size grows by a few pixels when the last
    chunk would be too short. Y/X chunk sizes are multiples of ``align`` (a
    space-to-depth network's factor), so every block starts on its grid."""
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
            size = min(n, -(-size // align) * align)
            while n % size and n % size < halo:  # keep the grid regular, the last chunk >= halo
                size = min(n, size + align)
            out.append(tuple([size] * (n // size) + ([n % size] if n % size else [])))
        else:
            out.append(tuple([size] * (n // size) + ([n % size] if n % size else [])))
    return tuple(out)


def is_lazy_input(image) -> bool:
    """True for a dask array or a zarr array (what ``restore`` hands to ``napari_memnet.restoration.lazy.graph``)."""
    return is_dask_array(image) or (type(image).__module__.startswith("zarr") and hasattr(image, "chunks"))


def halo_for(radius: int, scale: int, align: int = 1) -> int:
    """Y/X halo in input pixels for a model of receptive radius ``radius`` (a multiple of ``align``)."""
    halo = int(radius) if scale == 1 else int(math.ceil(radius / scale)) + 3
    return -(-halo // align) * align


# ------------------------------------------------------------------ the plan of one block
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
    settings: EngineSettings  # device, precision, tile size and ensemble, as requested
    token: str
    use_cache: bool = field(default=True)
