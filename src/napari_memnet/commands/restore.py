"""``memnet restore``: restore TIFF, PNG and JPEG files (or folders of them).

Each input ``NAME.ext`` becomes ``OUTDIR/NAME_<task>.tif``, written
atomically. TIFF axes come from the file (ImageJ hyperstack or OME/shaped
series axes, e.g. ``TZCYX``, ``YXS``); ``--axes`` overrides them. The
resolution tags (pixels per unit) are kept, multiplied by the scale for
super-resolution; ImageJ metadata (unit, spacing, frame interval) is kept
when the result can be written as an ImageJ hyperstack. A file that fails is
reported and the others still run; the exit code is 1 if any failed.

Big data: zarr / OME-Zarr inputs (and any input with ``--zarr``/``--ome``)
are restored out of core into ``OUTDIR/NAME_<task>.zarr`` chunk by chunk,
resumable after an interruption, optionally on a dask.distributed cluster
(``--scheduler tcp://...``); see docs/bigdata.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.tasks import SR_SCALES, TASK_NAMES, check_task

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES
IMAGEJ_KEYS = ("unit", "spacing", "finterval", "xunit", "yunit", "zunit")
IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)


@dataclass
class LoadedImage:
    """Pixels plus what is needed to write the result back with its metadata."""

    data: np.ndarray
    axes: str | None  # None: let restore pick the default for the shape
    resolution: tuple[float, float] | None = None  # (x, y) pixels per unit
    resolution_unit: int | None = None
    imagej: dict = field(default_factory=dict)


def register(sub) -> None:
    p = sub.add_parser("restore", help="restore image files (TIFF, PNG, JPEG) with a MemNet model",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for NAME_<task>.tif results")
    p.add_argument("--task", required=True, choices=TASK_NAMES)
    p.add_argument("--scale", type=int, choices=SR_SCALES, help="super-resolution factor (task sr)")
    p.add_argument("--model", help="model name or file (default: the task's bundled model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16 (default auto)")
    p.add_argument("--tile", type=int, metavar="N", help="tile side in pixels (default: from device memory)")
    p.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="average the model over N (1..8) rotated and flipped copies of each image: "
                        "N times the time, a little better (default 1: off)")
    p.add_argument("--axes", help="axes of every input, e.g. TZYX or YXC (default: from the file / shape)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--camera", action="store_true",
                   help="denoise: the inputs are camera counts (photon + read noise); each gray plane is "
                        "variance-stabilised for its own estimated noise first (not with --zarr)")
    add_zarr_arguments(p)  # --zarr, --ome, --chunks, --scheduler, --overwrite (big data)
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------- inputs
def collect_inputs(paths: list[str]) -> list[Path]:
    """Files as given, plus the supported images directly inside given folders
    (sorted, hidden files skipped). Missing paths are kept: they fail later."""
    from ..restoration.lazy.zarr_io import is_zarr_path

    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir() and not is_zarr_path(path):
            found.extend(sorted(p for p in path.iterdir()
                                if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")))
        else:
            found.append(path)
    return found


def read_image(path: Path) -> LoadedImage:
    """Read a TIFF (tifffile) or PNG/JPEG (Pillow) file."""
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(path)
    if suffix in PIL_SUFFIXES:
        return _read_pil(path)
    raise ValueError(f"unsupported file type {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")


def _read_tiff(path: Path) -> LoadedImage:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ValueError(f"{path}: no image series in this TIFF")
        series = tif.series[0]
        data = series.asarray()
        axes = series.axes
        page = tif.pages[0]
        tags = page.tags
        resolution = None
        unit = None
        if "XResolution" in tags and "YResolution" in tags:
            xr, yr = tags["XResolution"].value, tags["YResolution"].value
            resolution = (xr[0] / xr[1], yr[0] / yr[1])
            unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else None
        imagej = {k: v for k, v in (tif.imagej_metadata or {}).items() if k in IMAGEJ_KEYS}
    # tifffile squeezes length-1 axes; its letters map onto ours (S = samples = channel)
    return LoadedImage(np.asarray(data), axes if len(axes) == np.ndim(data) else None, resolution, unit, imagej)


def _read_pil(path: Path) -> LoadedImage:
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode == "LA":
            im = im.convert("RGBA")  # gray + alpha: restored as colour with alpha kept
        elif mode in ("1", "CMYK", "YCbCr", "PA"):
            im = im.convert("RGB" if mode != "1" else "L")
        data = np.asarray(im)
    axes = {2: "YX", 3: "YXC"}.get(data.ndim)
    return LoadedImage(data.copy(), axes)


# ---------------------------------------------------------------------------- outputs
def output_path(path: Path, outdir: Path, task: str) -> Path:
    return outdir / f"{path.stem}_{task}.tif"


def write_tiff(target: Path, data: np.ndarray, axes: str, source: LoadedImage, scale: int) -> None:
    """Write atomically, keeping axes, resolution and (when possible) ImageJ metadata."""
    import tifffile

    from ..core.atomic import atomic_path

    kwargs: dict = {}
    if source.resolution is not None:
        kwargs["resolution"] = (source.resolution[0] * scale, source.resolution[1] * scale)
        if source.resolution_unit is not None:
            kwargs["resolutionunit"] = source.resolution_unit
    rgb = axes[-1] in "CS" and data.shape[-1] in (3, 4) and data.dtype in (np.uint8, np.uint16)
    imagej_axes = "TZCYXS"
    use_imagej = (bool(source.imagej) and data.dtype.type in IMAGEJ_DTYPES
                  and all(a in imagej_axes for a in axes)
                  and list(axes) == sorted(axes, key=imagej_axes.index))
    if use_imagej:
        kwargs["imagej"] = True
        kwargs["metadata"] = {"axes": axes, **source.imagej}
    else:
        kwargs["metadata"] = {"axes": axes}
    kwargs["photometric"] = "rgb" if rgb else "minisblack"
    if rgb and data.shape[-1] == 4:
        kwargs["extrasamples"] = ("unassalpha",)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            tifffile.imwrite(fh, data, bigtiff=data.nbytes > 2**32 - 2**25, **kwargs)


# ---------------------------------------------------------------------------- command
def _restore_one(path: Path, target: Path, args, model, quiet: bool) -> str:
    from ..api import restore_iter
    from ..restoration.events import RestoreResult
    from .progressbar import ProgressBar

    loaded = read_image(path)
    axes = args.axes or loaded.axes
    bar = None if quiet else ProgressBar(path.name, 0, unit="tiles")
    result = None
    try:
        for item in restore_iter(loaded.data, args.task, scale=args.scale, model=model, axes=axes,
                                 device=args.device, precision=args.precision, tile_size=args.tile,
                                 camera=args.camera, ensemble=args.ensemble):
            if isinstance(item, RestoreResult):
                result = item
            elif bar is not None:
                bar.update(item.done, item.total)
    finally:
        if bar is not None:
            bar.close()
    write_tiff(target, result.data, result.axes, loaded, result.scale)
    return (f"{path} -> {target} ({'x'.join(map(str, result.data.shape))} {result.data.dtype}, "
            f"{result.seconds:.1f} s on {result.device}, {result.precision}, tile {result.tile_size}"
            f"{f', x{result.ensemble} ensemble' if result.ensemble > 1 else ''})")


def run(args) -> int:
    from ..cli import CommandError
    from ..models.files import load_model
    from ..restoration.ensemble import check_ensemble
    from ..restoration.lazy.zarr_io import is_zarr_path

    try:
        check_task(args.task, args.scale)
        check_ensemble(args.ensemble)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.camera and (args.task != "denoise" or args.zarr or args.ome):
        raise CommandError("--camera is for --task denoise on images read into memory (not with --zarr / --ome)")
    inputs = collect_inputs(args.inputs)
    if not inputs:
        raise CommandError("no input images found (supported: " + ", ".join(SUFFIXES) + ")")
    outdir = Path(args.output)
    try:
        model = load_model(args.model, task=args.task)
    except ValueError as exc:  # ModelFileError is a ValueError
        raise CommandError(str(exc)) from None
    input_set = {p.resolve() for p in inputs if p.exists()}
    written: set[Path] = set()
    failed = 0
    for path in inputs:
        use_zarr = args.zarr or args.ome or is_zarr_path(path)
        target = zarr_output_path(path, outdir, args.task, args.ome) if use_zarr else output_path(path, outdir, args.task)
        try:
            resolved = target.resolve()
            if resolved in input_set:
                raise ValueError(f"refusing to overwrite an input file: {target}")
            if resolved in written:
                raise ValueError(f"{target} was already written by another input of this run (same name)")
            if use_zarr and args.camera:
                raise ValueError("--camera needs the image in memory; a zarr input is restored chunk by chunk")
            if use_zarr:  # out of core, chunk by chunk, resumable
                message = _restore_one_zarr(path, outdir, args, model, args.quiet)
            else:
                message = _restore_one(path, target, args, model, args.quiet)
            written.add(resolved)
            print(message)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # report, and go on with the other files
            failed += 1
            print(f"memnet restore: FAILED {path}: {exc}", file=sys.stderr)
    print(f"restored {len(inputs) - failed} of {len(inputs)} file(s) into {outdir}")
    return 1 if failed else 0


# ---------------------------------------------------------------------------- out of core (zarr)
def add_zarr_arguments(parser) -> None:
    """The out-of-core options of ``memnet restore``."""
    group = parser.add_argument_group("out-of-core (zarr) output")
    group.add_argument("--zarr", action="store_true",
                       help="write OUTDIR/NAME_<task>.zarr chunk by chunk (bounded memory, resumable); "
                            "always used for zarr inputs")
    group.add_argument("--ome", action="store_true", help="write OME-Zarr 0.4 (NAME_<task>.ome.zarr)")
    group.add_argument("--chunks", type=int, metavar="N",
                       help="Y/X block side in input pixels (default 1024 on CPU, 2048 on GPU)")
    group.add_argument("--scheduler", default="threads",
                       help="threads (default), synchronous, or a dask.distributed address tcp://HOST:PORT")
    group.add_argument("--overwrite", action="store_true", help="replace an existing zarr output instead of resuming")


def zarr_output_path(path: Path, outdir: Path, task: str, ome: bool) -> Path:
    name = Path(path).name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".npy"):
        if name.lower().endswith(suffix):
            ome = ome or suffix == ".ome.zarr"
            name = name[: -len(suffix)]
            break
    return Path(outdir) / f"{name}_{task}{'.ome.zarr' if ome else '.zarr'}"


def _restore_one_zarr(path, outdir, args, model, quiet: bool = False) -> str:
    """Restore one input into zarr for ``memnet restore`` and return its report line."""
    from ..restoration.lazy.zarr_io import restore_to_zarr
    from .progressbar import ProgressBar

    path = Path(path)
    target = zarr_output_path(path, Path(outdir), args.task, bool(getattr(args, "ome", False)))
    bar = None if quiet else ProgressBar(path.name, 0, unit="chunks")
    try:
        report = restore_to_zarr(
            path, target, args.task, scale=args.scale, model=model, axes=args.axes, device=args.device,
            precision=args.precision, chunks=getattr(args, "chunks", None),
            scheduler=getattr(args, "scheduler", None), overwrite=bool(getattr(args, "overwrite", False)),
            progress=None if bar is None else (lambda e: bar.update(e.done, e.total)),
            ensemble=getattr(args, "ensemble", 1))
    finally:
        if bar is not None:
            bar.close()
    resumed = f", {report.chunks_skipped} already done" if report.chunks_skipped else ""
    return (f"{path} -> {target} ({'x'.join(map(str, report.shape))} {np.dtype(report.dtype)}, "
            f"{report.chunks_written} chunk(s) written{resumed}, {report.seconds:.1f} s)")
