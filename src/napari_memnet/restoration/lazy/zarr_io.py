"""Out-of-core input and output: zarr, OME-Zarr, (Big)TIFF and .npy.

Reading (``open_image``) is lazy: a dask array over the file's own chunks.
TIFF files (BigTIFF included, tiled or striped, compressed or not) are read
through ``tifffile``'s zarr view (``imread(aszarr=True)``), so nothing is
loaded until a block needs it; ``.npy`` files are memory-mapped.

Writing (``restore_to_zarr``) restores a lazy image into a zarr array (or an
OME-Zarr 0.4 image: a group with ``multiscales`` metadata and the array
``"0"``) one output chunk at a time, so memory stays bounded by a few blocks
whatever the image size. It is resumable: after a chunk's data is written, a
marker file ``<dst>/.memnet-done/<chunk>`` is written (atomically); a chunk
without a marker is (re)computed on the next run, so an interrupted run never
leaves a half-written chunk counted as done. The run's parameters are kept in
the output's attributes (``memnet_run``); resuming with different parameters
is refused.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.atomic import atomic_write_text

__all__ = ["open_image", "restore_to_zarr", "ZarrRestoreReport", "DONE_DIR", "OME_AXIS_TYPES"]

DONE_DIR = ".memnet-done"
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif", ".ome.tiff")
OME_AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def _require_zarr():
    try:
        import zarr
    except ImportError:  # pragma: no cover - depends on the installation
        raise ValueError("zarr input/output needs the 'zarr' package: pip install 'napari-memnet[dask]'") from None
    return zarr


# ------------------------------------------------------------------ reading
def open_image(path, *, level: int = 0):
    """Open a zarr / OME-Zarr / TIFF / .npy image lazily.

    Returns ``(dask_array, axes)``; ``axes`` is a letter string (e.g. "ZYX",
    "YXC") when the file says, else None. For an OME-Zarr or a pyramidal TIFF,
    ``level`` picks the resolution (0 = full)."""
    import dask.array as da

    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder (expected a zarr/OME-Zarr folder, a TIFF or a .npy file)")
    name = path.name.lower()
    if path.is_file() and name.endswith(TIFF_SUFFIXES):
        return _open_tiff(path, level)
    if path.is_file() and name.endswith(".npy"):
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return da.from_array(arr, chunks="auto"), None
    if path.is_dir():
        return _open_zarr(path, level)
    raise ValueError(f"{path}: unsupported input (expected a zarr/OME-Zarr folder, a .tif/.tiff file or a .npy file)")


def _open_tiff(path: Path, level: int):
    import dask.array as da
    import tifffile

    zarr = _require_zarr()
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            n_levels = len(series.levels)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
        raise ValueError(f"{path}: not a readable TIFF file ({type(exc).__name__}: {exc})") from None
    if not 0 <= level < n_levels:
        raise ValueError(f"{path}: has {n_levels} resolution level(s); level {level} does not exist")
    store = tifffile.imread(path, aszarr=True, level=level)
    z = zarr.open(store, mode="r")
    return da.from_zarr(z), _tiff_axes(axes)


def _tiff_axes(axes: str) -> str | None:
    """tifffile's axes letters in ours (S = samples = colour channels -> C)."""
    axes = axes.replace("S", "C")
    if axes.count("Y") != 1 or axes.count("X") != 1 or len(set(axes)) != len(axes):
        return None
    return axes


def _ome_multiscales(attrs) -> list | None:
    attrs = dict(attrs)
    if "multiscales" in attrs:
        return attrs["multiscales"]
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return ome["multiscales"]
    return None


def _open_zarr(path: Path, level: int):
    import dask.array as da

    zarr = _require_zarr()
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for "not a zarr store"
        raise ValueError(f"{path}: not a zarr array or group ({type(exc).__name__}: {exc})") from None
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        return da.from_zarr(node), None
    multiscales = _ome_multiscales(node.attrs)
    if multiscales:
        datasets = multiscales[0].get("datasets", [])
        if not 0 <= level < len(datasets):
            raise ValueError(f"{path}: OME-Zarr has {len(datasets)} level(s); level {level} does not exist")
        axes_meta = multiscales[0].get("axes")
        axes = None
        if axes_meta:
            names = [(a["name"] if isinstance(a, dict) else str(a)).upper() for a in axes_meta]
            axes = _tiff_axes("".join(n[:1] for n in names))
        return da.from_zarr(node[datasets[level]["path"]]), axes
    arrays = list(node.array_keys())
    if len(arrays) == 1:
        return da.from_zarr(node[arrays[0]]), None
    raise ValueError(f"{path}: a zarr group without OME multiscales metadata and with {len(arrays)} arrays; "
                     "name the array folder itself")


# ------------------------------------------------------------------ writing
@dataclass
class ZarrRestoreReport:
    """What ``restore_to_zarr`` did."""

    path: str
    array_path: str
    shape: tuple
    dtype: str
    chunks_total: int
    chunks_written: int
    chunks_skipped: int
    seconds: float


def _chunk_name(loc) -> str:
    return ".".join(str(int(i)) for i in loc)


def _write_block(block: np.ndarray, array_path: str, region: tuple, marker: str) -> int:
    """Write one output chunk, THEN its completion marker (runs on a worker)."""
    zarr = _require_zarr()
    target = zarr.open_array(array_path, mode="r+")
    target[region] = block
    atomic_write_text(marker, "")
    return int(block.nbytes)


def _run_signature(result, task, scale, spec, src_desc, plan) -> dict:
    return {
        "task": task,
        "scale": scale,
        "model": spec.name,
        "model_key": spec.key,
        "source": src_desc,
        "shape": list(result.shape),
        "chunks": [list(c) for c in result.chunks],
        "dtype": np.dtype(result.dtype).str,
        "normalization": [[n.mode, n.low, n.high] for n in plan.norms],
        "axes": plan.axes,
        # only when on, so a run written without an ensemble keeps its signature
        **({"ensemble": plan.settings.ensemble} if plan.settings.ensemble > 1 else {}),
    }


def _ome_attrs(axes: str, name: str, sr_scale: int) -> dict:
    axes_meta = []
    for a in axes:
        entry = {"name": a.lower()}
        if a in OME_AXIS_TYPES:
            entry["type"] = OME_AXIS_TYPES[a]
        axes_meta.append(entry)
    scale = [1.0 / sr_scale if a in "YX" else 1.0 for a in axes]
    return {"multiscales": [{
        "version": "0.4", "name": name, "axes": axes_meta,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }]}


def restore_to_zarr(src, dst, task: str, *, scale=None, model=None, axes: str | None = None,
                    device: str = "auto", precision: str = "auto", chunks=None, scheduler=None,
                    normalization=None, resume: bool = True, overwrite: bool = False, ome: bool | None = None,
                    progress=None, cancel=None, level: int = 0, ensemble: int = 1) -> ZarrRestoreReport:
    """Restore ``src`` (a path or a dask/zarr/numpy array) into the zarr folder ``dst``.

    One task per output chunk computes the block and writes it, then its
    marker; chunks already marked are skipped (``resume=True``). ``dst`` that
    exists from a different run (other model, task, shape, chunks...) is
    refused unless ``overwrite=True`` (which deletes it first). ``ome``
    (default: ``dst`` ends with ``.ome.zarr``) writes an OME-Zarr 0.4 image.
    ``progress(TileProgress)`` is called as chunks finish; ``cancel`` (a
    threading.Event) stops between chunks (``Cancelled``); a failing chunk
    raises ``distributed.BlockError`` naming it, and the chunks finished so far
    stay marked, so a rerun continues. ``ensemble`` as for ``restore``.
    Returns a ``ZarrRestoreReport``."""
    import dask

    from .graph import block_slices, plan_of, restore_dask
    from .schedulers import run_blocks

    zarr = _require_zarr()
    start = time.perf_counter()
    if isinstance(src, (str, Path)):
        image, file_axes = open_image(src, level=level)
        axes = axes or file_axes
        src_desc = str(Path(src).expanduser().resolve())
    else:
        image, src_desc = src, type(src).__name__
    result = restore_dask(image, task, scale=scale, model=model, axes=axes, device=device, precision=precision,
                          chunks=chunks, scheduler=scheduler, normalization=normalization, cache=False,
                          ensemble=ensemble)
    plan = plan_of(result)
    signature = _run_signature(result, task, plan.scale, plan.spec, src_desc, plan)
    dst = Path(dst).expanduser()
    ome = dst.name.lower().endswith(".ome.zarr") if ome is None else bool(ome)
    array_path = dst / "0" if ome else dst
    done_dir = dst / DONE_DIR

    if dst.exists():
        previous = _read_signature(dst, array_path)
        if overwrite:
            if previous is None and any(dst.iterdir()):
                raise ValueError(f"{dst}: exists and is not a napari-memnet output; refusing to delete it")
            shutil.rmtree(dst)
        elif not resume:
            raise ValueError(f"{dst}: already exists; pass resume=True to continue it or overwrite=True to replace it")
        elif previous is None:
            if any(dst.iterdir()):
                raise ValueError(f"{dst}: exists and is not a napari-memnet output; choose another destination")
        elif previous != signature:
            diff = sorted(k for k in signature if previous.get(k) != signature[k])
            raise ValueError(f"{dst}: was written by a different run (differs in {', '.join(diff)}); "
                             "use another destination or overwrite it (overwrite=True, memnet restore --overwrite)")
    out_chunks = tuple(c[0] for c in result.chunks)
    if any(any(x != c[0] for x in c[:-1]) or c[-1] > c[0] for c in result.chunks):
        raise ValueError(f"chunks {result.chunks} are not a regular grid; zarr output needs one")
    if not array_path.exists() or _read_signature(dst, array_path) is None:
        common = dict(shape=result.shape, chunks=out_chunks, dtype=result.dtype, fill_value=0)
        if ome:
            group = zarr.open_group(str(dst), mode="a", zarr_format=2)
            group.create_array("0", overwrite=True, **common)
            group.attrs.update(_ome_attrs(plan.axes, dst.name, plan.scale))
        else:
            zarr.create_array(str(array_path), overwrite=True, zarr_format=2, **common)
        target = zarr.open_array(str(array_path), mode="r+")
        target.attrs["memnet_run"] = signature
    done_dir.mkdir(parents=True, exist_ok=True)

    slices = block_slices(result.chunks)
    total = len(slices)
    pending = [loc for loc in slices if not (done_dir / _chunk_name(loc)).exists()]
    skipped = total - len(pending)
    written = 0

    def items():
        for loc in pending:
            task_ = dask.delayed(_write_block, pure=False)(
                result.blocks[loc], str(array_path), slices[loc], str(done_dir / _chunk_name(loc)))
            yield loc, task_

    def on_done(loc, _nbytes):
        nonlocal written
        written += 1
        if progress is not None:
            from ..events import TileProgress

            done = skipped + written
            elapsed = time.perf_counter() - start
            eta = elapsed / written * (total - done) if written else None
            progress(TileProgress(done, total, elapsed, eta))

    run_blocks(items(), scheduler, on_done=on_done, cancel=cancel)
    return ZarrRestoreReport(str(dst), str(array_path), tuple(result.shape), np.dtype(result.dtype).str,
                             total, written, skipped, time.perf_counter() - start)


def _read_signature(dst: Path, array_path: Path) -> dict | None:
    for attrs_file in (array_path / ".zattrs", array_path / "zarr.json"):
        if attrs_file.is_file():
            try:
                meta = json.loads(attrs_file.read_text("utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
            if attrs_file.name == "zarr.json":
                meta = meta.get("attributes", {})
            run = meta.get("memnet_run")
            return run if isinstance(run, dict) else None
    return None


# ------------------------------------------------------------------ input kinds
def is_zarr_path(path) -> bool:
    """A folder that is a zarr array/group (``.zarray``, ``.zgroup`` or ``zarr.json`` inside)."""
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in (".zarray", ".zgroup", "zarr.json"))
