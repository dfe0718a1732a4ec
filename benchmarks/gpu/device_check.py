"""Every check of the CUDA path in one command; results in DIR/device_check.json.

    PYTHONPATH=src python benchmarks/gpu/device_check.py --out DIR [--time-budget 420]
    PYTHONPATH=src python benchmarks/gpu/device_check.py --out DIR --smoke     # the CPU, a tiny net, seconds

The JSON is ``{"environment": {...}, "checks": [{"name", "ok", "value", "seconds"[, "error"]}], ...}``,
re-written after every check, so a command killed at its time limit still leaves the checks done so
far. ``ok`` is true/false, or null for a check that was skipped (the reason is its value). A failing
check records its error and traceback; the others still run, and the script exits 0.

Correctness checks (the real engine: ``inference.Engine``, ``restore``, ``lazy``, ``Trainer``,
``fine_tune``): CUDA against the CPU fp32 result for each task's bundled model, the uint8 API, an
nD stack, RGBA, the dask path, the tile size from free memory, the out-of-memory fallback, training
steps and a fine-tune. Speed checks (``_perf.py``): MP/s and peak CUDA memory of the paper model
(M6R6 C64) and the fast model from 512 to 4096 px in bf16 (and fp32 at 1024), the 40 MP/s goal, the
profiler's top operations, and the effect of cudnn.benchmark and channels_last.
With ``--smoke`` everything runs on the CPU with tiny random networks and small images; the checks
that need CUDA record ok=null "skipped: no CUDA".
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _checks_train import check_fine_tune, check_train_steps  # noqa: E402
from _common import Report, data_root, environment, max_abs, psnr, sample_plane, sync, training_files  # noqa: E402

_common.setup()

BF16_PSNR_TOLERANCE_DB = 0.05  # issue #16: bf16 on CUDA within 0.05 dB of the CPU fp32 result
FP32_PSNR_TOLERANCE_DB = 0.01  # fp32 (cuDNN may use TF32) within 0.01 dB
EXACT_FP32_MAX_ABS = 1e-3  # fp32 with TF32 off: the same numbers up to summation order


class Context:
    """What every check needs: the device, the models, image sizes, a scratch folder."""

    def __init__(self, args):
        import torch

        from napari_memnet.benchmark import random_memnet

        self.smoke = args.smoke
        self.cuda = torch.cuda.is_available() and not args.smoke
        self.device = "cuda" if self.cuda else "cpu"
        self.no_cuda = None if self.cuda else "no CUDA" + (" (smoke run on the CPU)" if args.smoke else "")
        self.side = 64 if args.smoke else 256
        self.tmp = Path(tempfile.mkdtemp(prefix="memnet-device-check-"))
        self.data = data_root(args.data)
        self._tiny = random_memnet(2, 2, 8, seed=0) if args.smoke else None

    def task_model(self, task):
        """The task's bundled paper model (smoke: a tiny random MemNet)."""
        load_model = _common.api("load_model")
        if self.smoke:
            return load_model(self._tiny, task=task)
        return load_model(_common.BUNDLED[task])


def degraded(task, clean8):
    """(model input on 0..1, target on 0..1, PSNR shave) for a uint8 clean plane."""
    import numpy as np

    api = _common.api
    clean = clean8.astype(np.float32) / 255
    if task == "denoise":
        return api("add_noise")(clean, 25.0, rng=0).astype(np.float32), clean, 0
    if task == "sr":
        target = np.ascontiguousarray(api("modcrop")(clean, 2))
        return np.asarray(api("bicubic_degrade")(target, 2), np.float32), target, 2
    return api("jpeg_compress")(clean8, 10).astype(np.float32) / 255, clean, 0


# ------------------------------------------------------------------ correctness
def check_cuda(ctx):
    import torch

    if ctx.smoke:
        return None, "skipped: smoke run on the CPU"
    return torch.cuda.is_available(), {"device_count": torch.cuda.device_count()}


def check_restore_vs_cpu(ctx, task):
    """restore_plane on the device (fp32, fp32 without TF32, bf16) against the CPU fp32 result."""
    import numpy as np
    import torch

    restore_plane = _common.api("restore_plane")
    model = ctx.task_model(task)
    inp, target, shave = degraded(task, sample_plane(ctx.side))
    clip = (lambda y: np.clip(y, 0, 1)) if task != "denoise" else (lambda y: y)
    ref = clip(restore_plane(model, inp, device="cpu", precision="fp32"))
    ref_psnr = psnr(ref, target, shave=shave)
    value = {"model": model.name, "image": list(inp.shape), "cpu_fp32_psnr": ref_psnr,
             "input_psnr": psnr(inp, target, shave=shave)}
    ok = True
    tf32 = torch.backends.cudnn.allow_tf32
    for label, precision, allow_tf32, tol in (("fp32", "fp32", tf32, FP32_PSNR_TOLERANCE_DB),
                                              ("fp32_no_tf32", "fp32", False, None),
                                              ("bf16", "bf16", tf32, BF16_PSNR_TOLERANCE_DB)):
        torch.backends.cudnn.allow_tf32 = allow_tf32
        try:
            out = clip(restore_plane(model, inp, device=ctx.device, precision=precision))
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
        diff = psnr(out, target, shave=shave) - ref_psnr
        entry = {"precision": precision, "device": ctx.device, "max_abs_diff": max_abs(out, ref), "psnr_diff_db": diff, "cudnn_allow_tf32": allow_tf32}
        entry["ok"] = bool(np.isfinite(out).all()) and (
            abs(diff) <= tol if tol is not None else entry["max_abs_diff"] <= EXACT_FP32_MAX_ABS)
        ok = ok and entry["ok"]
        value[label] = entry
    return ok, value


def _restore_pair(ctx, image, model, **kw):
    """(RestoreResult on the device, numpy result on the CPU) of ``restore``."""
    restore, restore_iter = _common.api("restore"), _common.api("restore_iter")
    result = None
    for item in restore_iter(image, "denoise", model=model, device=ctx.device, **kw):
        result = item
    return result, restore(image, "denoise", model=model, device="cpu", **kw)


def check_uint8_api(ctx):
    """napari_memnet.restore on a uint8 image: device auto-precision vs the CPU, uint8 out."""
    import numpy as np

    clean = sample_plane(ctx.side)
    noisy = np.clip(np.round(clean + np.random.default_rng(1).normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    result, cpu = _restore_pair(ctx, noisy, ctx.task_model("denoise"))
    dev_psnr, cpu_psnr = psnr(result.data, clean, 255), psnr(cpu, clean, 255)
    value = {"device": result.device, "precision": result.precision, "tile": result.tile_size,
             "dtype": str(result.data.dtype), "max_abs_diff_levels": max_abs(result.data, cpu),
             "pixels_differing_over_1_level": float(np.mean(np.abs(result.data.astype(int) - cpu.astype(int)) > 1)),
             "psnr": dev_psnr, "cpu_psnr": cpu_psnr, "input_psnr": psnr(noisy, clean, 255)}
    ok = (result.data.dtype == np.uint8 and result.data.shape == noisy.shape
          and abs(dev_psnr - cpu_psnr) <= BF16_PSNR_TOLERANCE_DB and result.device.startswith(ctx.device))
    return ok, value


def check_stack(ctx):
    """A TZYX uint16 stack (4 planes, sigma 15/25/35/50 on the 8-bit scale): device vs CPU per plane."""
    import numpy as np

    clean = sample_plane(ctx.side).astype(np.float64) * 257
    rng = np.random.default_rng(2)
    sigmas = (15, 25, 35, 50)
    planes = [np.clip(np.round(clean + rng.normal(0, s * 257, clean.shape)), 0, 65535) for s in sigmas]
    stack = np.stack(planes).reshape(2, 2, *clean.shape).astype(np.uint16)
    result, cpu = _restore_pair(ctx, stack, ctx.task_model("denoise"), axes="TZYX")
    out, ref = result.data.reshape(4, *clean.shape), cpu.reshape(4, *clean.shape)
    rows = [{"sigma": s, "psnr": psnr(o, clean, 65535), "cpu_psnr": psnr(r, clean, 65535),
             "input_psnr": psnr(p, clean, 65535)} for s, o, r, p in zip(sigmas, out, ref, planes)]
    ok = (result.data.shape == stack.shape and result.data.dtype == np.uint16
          and all(abs(r["psnr"] - r["cpu_psnr"]) <= BF16_PSNR_TOLERANCE_DB for r in rows))
    return ok, {"shape": list(stack.shape), "axes": result.axes, "device": result.device,
                "precision": result.precision, "planes": rows}


def colour_image(ctx):
    """A uint8 RGB image: a T91 photo when the training images are here, else the sample's planes."""
    import numpy as np

    for path in [] if ctx.smoke else training_files("sr", ctx.data):
        from PIL import Image

        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        if min(rgb.shape[:2]) >= ctx.side:
            return rgb[:ctx.side, :ctx.side].copy(), path.name
    g = sample_plane(ctx.side)
    return np.ascontiguousarray(np.stack([g, g[::-1], g[:, ::-1]], axis=-1)), "bundled sample, planes flipped"


def check_rgb(ctx):
    """An RGBA uint8 image through the luma: device vs CPU, alpha untouched."""
    import numpy as np

    rgb, source = colour_image(ctx)
    noisy = np.clip(np.round(rgb + np.random.default_rng(3).normal(0, 15, rgb.shape)), 0, 255).astype(np.uint8)
    alpha = np.linspace(0, 255, rgb.shape[0] * rgb.shape[1]).reshape(rgb.shape[:2]).astype(np.uint8)
    rgba = np.concatenate([noisy, alpha[..., None]], axis=-1)
    result, cpu = _restore_pair(ctx, rgba, ctx.task_model("denoise"), axes="YXC")
    dev_psnr, cpu_psnr = psnr(result.data[..., :3], rgb, 255), psnr(cpu[..., :3], rgb, 255)
    alpha_kept = bool(np.array_equal(result.data[..., 3], alpha) and np.array_equal(cpu[..., 3], alpha))
    ok = result.data.shape == rgba.shape and alpha_kept and abs(dev_psnr - cpu_psnr) <= BF16_PSNR_TOLERANCE_DB
    return ok, {"image": source, "shape": list(rgba.shape), "device": result.device, "psnr": dev_psnr,
                "cpu_psnr": cpu_psnr, "input_psnr": psnr(noisy, rgb, 255), "alpha_kept": alpha_kept,
                "max_abs_diff_levels": max_abs(result.data, cpu)}


def check_dask(ctx):
    """A dask array through restore_iter on the device (4 blocks) against the numpy result there."""
    try:
        import dask.array as da
    except ImportError:
        return None, "skipped: dask missing"
    import numpy as np

    restore = _common.api("restore")
    side = 2 * ctx.side
    clean = sample_plane(side)
    noisy = np.clip(np.round(clean + np.random.default_rng(4).normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    model = ctx.task_model("denoise")
    result, blocks = _dask_result(ctx, da.from_array(noisy), model, chunks=side // 2)
    ref = restore(noisy, "denoise", model=model, device=ctx.device)
    lazy = restore(da.from_array(noisy), "denoise", model=model, device=ctx.device, chunks=side // 2)
    value = {"device": result.device, "precision": result.precision, "tile": result.tile_size, "blocks": blocks,
             "lazy_type": type(lazy).__name__, "psnr": psnr(result.data, clean, 255),
             "numpy_psnr": psnr(ref, clean, 255), "max_abs_diff_levels": max_abs(result.data, ref)}
    lazy_equal = bool(np.array_equal(np.asarray(lazy.compute()), result.data))
    value["lazy_compute_equals_iter"] = lazy_equal
    ok = (result.device.startswith(ctx.device) and result.data.shape == noisy.shape and lazy_equal
          and abs(value["psnr"] - value["numpy_psnr"]) <= BF16_PSNR_TOLERANCE_DB)
    return ok, value


def check_dask_default_chunks(ctx):
    """A 4096 px image (smoke: 256) through dask with the default chunks and threads on the device:
    blocks run in parallel threads, each with the engine's tile, so the peak memory adds up."""
    try:
        import dask.array as da
    except ImportError:
        return None, "skipped: dask missing"
    import torch

    side = 256 if ctx.smoke else 4096
    noisy = sample_plane(side)
    if ctx.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result, blocks = _dask_result(ctx, da.from_array(noisy), ctx.task_model("denoise"))
    seconds = time.perf_counter() - t0
    value = {"side": side, "blocks": blocks, "device": result.device, "tile": result.tile_size,
             "seconds": seconds, "mp_per_s": side * side / 1e6 / seconds,
             "peak_cuda_gib": torch.cuda.max_memory_allocated() / 2**30 if ctx.cuda else None}
    return result.data.shape == noisy.shape and result.device.startswith(ctx.device), value


def _dask_result(ctx, lazy, model, chunks=None):
    result, blocks = None, 0
    restore_iter = _common.api("restore_iter")
    for item in restore_iter(lazy, "denoise", model=model, device=ctx.device, chunks=chunks):
        if hasattr(item, "data"):
            result = item
        else:
            blocks += 1
    return result, blocks


def check_tile_size(ctx):
    """devices.default_tile_size from free memory, then one tile of that size measured."""
    import numpy as np
    import torch

    api = _common.api
    bytes_per_pixel, default_tile_size, Engine = api("bytes_per_pixel"), api("default_tile_size"), api("Engine")
    model = ctx.task_model("denoise")
    torch.cuda.empty_cache()
    engine = Engine(model, device=ctx.device, precision="bf16")
    free, total = torch.cuda.mem_get_info()
    tile = default_tile_size(torch.device(ctx.device), model.network, "bf16")
    window = tile + 2 * engine.halo
    plane = np.random.default_rng(5).random((window, window), dtype=np.float32)
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    y = engine.forward(plane)
    sync(ctx.device)
    peak = torch.cuda.max_memory_allocated() - base
    del y
    per_px = bytes_per_pixel(model.network, "bf16")
    value = {"free_gib": free / 2**30, "total_gib": total / 2**30, "tile": tile, "engine_tile": engine.tile,
             "window": window, "estimate_bytes_per_pixel": per_px, "estimate_gib": per_px * window**2 / 2**30,
             "measured_peak_gib": peak / 2**30, "measured_bytes_per_pixel": peak / window**2,
             "half_free_gib": free / 2 / 2**30}
    ok = engine.tile == tile and tile % 64 == 0 and 256 <= tile <= 4096 and peak <= free / 2
    return ok, value


def check_oom_fallback(ctx):
    """Fill GPU memory so a 2048 px tile cannot fit; restore must halve its tile and still be right."""
    import numpy as np
    import torch

    restore_iter = _common.api("restore_iter")
    model = ctx.task_model("denoise")
    side = requested = 2048
    clean = sample_plane(side)
    noisy = np.clip(np.round(clean + np.random.default_rng(6).normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    halo = int(model.receptive_radius)
    keep = int(_common.api("bytes_per_pixel")(model.network, "bf16") * (requested // 4 + 2 * halo) ** 2 * 1.5)
    torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info()[0]
    filler = torch.empty(max(0, free - keep), dtype=torch.uint8, device=ctx.device)
    totals = []
    try:
        left = torch.cuda.mem_get_info()[0]
        t0 = time.monotonic()
        for item in restore_iter(noisy, "denoise", model=model, device=ctx.device, precision="bf16",
                                 tile_size=requested):
            if hasattr(item, "data"):
                result = item
            elif not totals or totals[-1] != item.total:
                totals.append(item.total)  # the tile count goes up when a plane restarts with smaller tiles
        seconds = time.monotonic() - t0
    finally:
        del filler
        torch.cuda.empty_cache()
    final = int(result.tile_size)
    ref = _common.api("restore")(noisy, "denoise", model=model, device=ctx.device, precision="bf16", tile_size=final)
    value = {"requested_tile": requested, "final_tile": final, "halvings": int(round(math.log2(requested / final))),
             "tile_counts_seen": totals, "free_left_gib": left / 2**30, "seconds": seconds,
             "psnr": psnr(result.data, clean, 255), "reference_psnr": psnr(ref, clean, 255),
             "max_abs_diff_vs_reference_levels": max_abs(result.data, ref)}
    ok = final < requested and abs(value["psnr"] - value["reference_psnr"]) <= BF16_PSNR_TOLERANCE_DB
    return ok, value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for device_check.json")
    parser.add_argument("--smoke", action="store_true", help="the CPU, tiny random nets, small images: seconds")
    parser.add_argument("--time-budget", type=float, default=None, metavar="S",
                        help="skip the remaining heavy checks once S seconds have passed (default: 420, smoke: none)")
    parser.add_argument("--data", help="training images (default: .data/train, else ../shared/data/train)")
    parser.add_argument("--only", nargs="*", metavar="NAME", help="run only checks whose name starts with one of these")
    args = parser.parse_args(argv)
    import _perf

    budget = args.time_budget if args.time_budget is not None else (None if args.smoke else 420.0)
    ctx = Context(args)
    report = Report(Path(args.out) / "device_check.json", environment(ctx.device), budget)
    report.data["mode"] = "smoke" if args.smoke else "full"
    checks = [("cuda_available", lambda: check_cuda(ctx), None, False)]
    checks += [(f"restore_vs_cpu[{t}]", (lambda t=t: check_restore_vs_cpu(ctx, t)), None, False)
               for t in ("denoise", "sr", "deblock")]
    checks += [("restore_uint8_api", lambda: check_uint8_api(ctx), None, False),
               ("nd_stack_tzyx_uint16", lambda: check_stack(ctx), None, False),
               ("rgba_uint8", lambda: check_rgb(ctx), None, False),
               ("dask_path", lambda: check_dask(ctx), None, False),
               ("dask_default_chunks", lambda: check_dask_default_chunks(ctx), None, True),
               ("tile_from_free_memory", lambda: check_tile_size(ctx), ctx.no_cuda, False),
               ("oom_fallback", lambda: check_oom_fallback(ctx), ctx.no_cuda, True),
               ("train_steps", lambda: check_train_steps(ctx), None, True),
               ("fine_tune", lambda: check_fine_tune(ctx), None, True)]
    checks += _perf.checks(ctx, report)
    # without CUDA only --smoke runs the checks: the full ones would take hours on a CPU
    cpu_only = None if ctx.cuda or args.smoke else "no CUDA here (on a CPU, run with --smoke)"
    with _common.smoke_threads(args.smoke):
        for name, fn, skip, heavy in checks:
            if args.only and not any(name.startswith(o) for o in args.only):
                continue
            report.run(name, fn, skip=skip or (cpu_only if name != "cuda_available" else None), heavy=heavy)
    report.finish()
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    print(f"wrote {report.path}: {report.data['summary']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
