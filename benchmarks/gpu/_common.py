"""Helpers shared by the GPU scripts (``device_check.py``, ``sprint.py``).

These scripts run on a borrowed GPU machine where only the checkout travels
and only torch, numpy, Pillow and safetensors can be counted on (no napari, no
platformdirs, maybe no dask). So:

* ``setup()`` puts ``src/`` on ``sys.path`` when ``napari_memnet`` is not
  importable and points ``NAPARI_MEMNET_MODELS_DIR`` at a private temporary
  folder (user models never leak in, and ``platformdirs`` is never needed);
* results are JSON files written atomically and re-written after every step
  (``Report``), so a command killed at its time limit still leaves them;
* training images come from ``--data``, else ``.data/train`` in the checkout
  (copied there by ``prepare_data.sh``), else ``../shared/data/train``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
# training image folders of each task (the paper's: Train400 for denoising, the "291 images" otherwise)
TASK_FOLDERS = {"denoise": ("Train400",), "sr": ("T91", "BSD200"), "deblock": ("T91", "BSD200")}
BUNDLED = {"denoise": "memnet-denoise", "sr": "memnet-sr", "deblock": "memnet-deblock"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def setup() -> None:
    """Make ``napari_memnet`` importable and isolate the user model folder."""
    try:
        import napari_memnet  # noqa: F401 - importable as installed?
    except ImportError:
        sys.path.insert(0, str(SRC))
    if not os.environ.get("NAPARI_MEMNET_MODELS_DIR"):
        os.environ["NAPARI_MEMNET_MODELS_DIR"] = tempfile.mkdtemp(prefix="memnet-gpu-models-")


@contextlib.contextmanager
def smoke_threads(smoke: bool):
    """One torch CPU thread during a smoke run (tiny tensors: more threads only contend on a shared
    machine, measured 25 ms against 0.08 ms for one small BatchNorm), restored afterwards."""
    import torch

    saved = torch.get_num_threads()
    if smoke:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# The package functions the GPU scripts call, and the module of each (one table; the scripts import
# lazily so that `--help` and the smoke mode start fast).
API = {
    "restore": "napari_memnet", "restore_iter": "napari_memnet.api", "fine_tune": "napari_memnet",
    "list_models": "napari_memnet", "load_model": "napari_memnet", "save_model": "napari_memnet",
    "Engine": "napari_memnet.restoration.engine", "restore_plane": "napari_memnet.restoration.eager",
    "psnr": "napari_memnet.core.metrics", "atomic_write_text": "napari_memnet.core.atomic",
    "add_noise": "napari_memnet.core.degrade", "modcrop": "napari_memnet.core.degrade",
    "bicubic_degrade": "napari_memnet.core.degrade", "jpeg_compress": "napari_memnet.core.degrade",
    "bytes_per_pixel": "napari_memnet.core.devices", "default_tile_size": "napari_memnet.core.devices",
    "resolve_device": "napari_memnet.core.devices",
}


def api(name: str):
    """The package function ``name`` (see ``API``)."""
    import importlib

    return getattr(importlib.import_module(API[name]), name)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def environment(device=None) -> dict:
    """What ran: versions, the device and its memory, the TF32/cuDNN switches, the date."""
    import numpy as np
    import torch

    env = {"date_utc": utc_now(), "python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__, "cuda_runtime": torch.version.cuda, "cpu_count": os.cpu_count(),
           "platform": platform.platform(), "cuda_available": torch.cuda.is_available(),
           "device": str(device) if device is not None else None, "git_commit": _git_commit()}
    if torch.cuda.is_available():
        index = 0
        if device is not None and torch.device(device).type == "cuda":
            index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        env.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                   multiprocessors=props.multi_processor_count, total_memory_gib=round(total / 2**30, 2),
                   free_memory_gib=round(free / 2**30, 2), bf16_supported=torch.cuda.is_bf16_supported(),
                   cudnn=torch.backends.cudnn.version(), cudnn_benchmark=torch.backends.cudnn.benchmark,
                   cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    else:
        env.update(device_name=platform.processor() or platform.machine(), torch_threads=torch.get_num_threads())
    return env


def _git_commit() -> str | None:
    head = REPO / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (REPO / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None  # the GPU machine gets the working tree without .git


def clean_json(value):
    """``value`` with NaN/inf floats as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_json(path: Path, data: dict) -> None:
    api("atomic_write_text")(path, json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n")


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def error_text(exc: BaseException, limit: int = 4000) -> str:
    """The exception and the end of its traceback (for the JSON)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text if len(text) <= limit else "..." + text[-limit:]


class Report:
    """``{"environment": ..., "checks": [{"name", "ok", "value", "seconds"[, "error"]}]}``, re-written
    to ``path`` after every check. ``ok`` is True, False, or None (skipped, with the reason as value)."""

    def __init__(self, path: Path, environment: dict, budget_s: float | None = None):
        self.path = Path(path)
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.data = {"environment": environment, "time_budget_s": budget_s, "checks": [], "finished": False}
        self.write()

    def left(self) -> float:
        return math.inf if self.budget_s is None else self.budget_s - (time.monotonic() - self.start)

    def write(self) -> None:
        self.data["seconds"] = round(time.monotonic() - self.start, 2)
        write_json(self.path, self.data)

    def add(self, name: str, ok, value, seconds: float = 0.0, error: str | None = None) -> dict:
        entry = {"name": name, "ok": ok, "value": value, "seconds": round(seconds, 3)}
        if error:
            entry["error"] = error
        self.data["checks"].append(entry)
        self.write()
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[ok]
        shown = value if not isinstance(value, (dict, list)) else json.dumps(clean_json(value))[:300]
        print(f"[{mark}] {name} ({seconds:.1f} s): {shown}" + (f"\n{error}" if error else ""), flush=True)
        return entry

    def run(self, name: str, fn, *, skip: str | None = None, heavy: bool = False) -> dict:
        """Run ``fn() -> (ok, value)``; any exception is recorded as ok=False with its text."""
        if skip:
            return self.add(name, None, f"skipped: {skip}")
        if heavy and self.left() <= 0:
            return self.add(name, None, f"skipped: time budget of {self.budget_s:g} s spent")
        t0 = time.monotonic()
        try:
            ok, value = fn()
        except Exception as exc:  # noqa: BLE001 - every failure is a result
            return self.add(name, False, f"{type(exc).__name__}: {exc}"[:500], time.monotonic() - t0,
                            error_text(exc))
        return self.add(name, ok, value, time.monotonic() - t0)

    def finish(self) -> None:
        self.data["finished"] = True
        checks = self.data["checks"]
        self.data["summary"] = {"ok": sum(c["ok"] is True for c in checks),
                                "failed": [c["name"] for c in checks if c["ok"] is False],
                                "skipped": sum(c["ok"] is None for c in checks)}
        self.write()


# ------------------------------------------------------------------ the profiler
def profile_table(fn, device, rows: int = 15, repeat: int = 1) -> dict:
    """Run ``fn`` ``repeat`` times under ``torch.profiler``; the ``rows`` operations that took
    the most device (CUDA) time of their own, or CPU time on the CPU: the ``key_averages``
    table and the same rows as data."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = str(device).startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
    sync(device)
    with profile(activities=activities) as prof:
        for _ in range(repeat):
            fn()
        sync(device)
    averages = prof.key_averages()
    key = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    total = sum(key(e) for e in averages) or 1.0
    top = sorted(averages, key=key, reverse=True)[:rows]
    return {
        "sort_by": sort_by, "repeat": repeat,
        "total_ms": round(total / 1000, 3),
        "top": [{"name": e.key, "calls": e.count, "self_ms": round(key(e) / 1000, 3),
                 "share": round(key(e) / total, 4), "cpu_total_ms": round(e.cpu_time_total / 1000, 3),
                 "device_total_ms": round(getattr(e, "device_time_total", 0) / 1000, 3)} for e in top],
        "table": averages.table(sort_by=sort_by, row_limit=rows),
        "torch": torch.__version__,
    }


# ------------------------------------------------------------------ images
def psnr(x, ref, peak=1.0, shave=0):
    """PSNR in dB of images on 0..``peak`` (``metrics.psnr``); colour (H, W, C) as one plane."""
    import numpy as np

    _psnr = api("psnr")
    x, ref = np.asarray(x, np.float64) / peak, np.asarray(ref, np.float64) / peak
    if x.ndim == 3:  # colour: all channels as one plane
        x, ref = x.reshape(x.shape[0], -1), ref.reshape(ref.shape[0], -1)
    return float(_psnr(x, ref, shave=shave))


def max_abs(a, b) -> float:
    """The largest absolute difference of two arrays."""
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def data_root(arg: str | None = None) -> Path | None:
    """The training-image folder: ``arg``, else ``.data/train``, else ``../shared/data/train``."""
    candidates = [Path(arg)] if arg else [REPO / ".data" / "train", REPO.parent / "shared" / "data" / "train"]
    for path in candidates:
        if path.is_dir():
            return path
    if arg:
        raise ValueError(f"--data {arg}: not a folder")
    return None


def training_files(task: str, root: Path | None, limit: int | None = None) -> list[Path]:
    """The task's training images under ``root`` (Train400; T91 + BSD200), sorted, at most ``limit``."""
    if root is None:
        return []
    files = []
    for folder in TASK_FOLDERS[task]:
        sub = root / folder
        if sub.is_dir():
            files += sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return files[:limit] if limit else files


def sample_crops(count: int, side: int) -> list:
    """``count`` different uint8 ``side`` x ``side`` crops (and flips) of the bundled sample photo:
    data for smoke runs and for machines without training images."""
    import numpy as np

    from napari_memnet.sample_data import astronaut_uint8

    img = astronaut_uint8()
    h, w = img.shape[:2]
    side = min(side, h, w)
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = img[y:y + side, x:x + side]
        out.append(np.ascontiguousarray(np.rot90(crop, i % 4)))
    return out


def sample_plane(side: int):
    """A ``side`` x ``side`` uint8 gray image: the bundled sample, mirrored out when ``side`` is larger."""
    import numpy as np

    from napari_memnet.sample_data import astronaut_uint8

    img = astronaut_uint8()
    reps = -(-side // min(img.shape[:2]))
    tiled = np.block([[img if (i + j) % 2 == 0 else img[::-1, ::-1] for j in range(reps)] for i in range(reps)])
    return np.ascontiguousarray(tiled[:side, :side])
