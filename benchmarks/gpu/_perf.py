"""The speed checks of ``device_check.py``: throughput, peak memory, the goal, the profiler.

* ``throughput[MODEL,PRECISION,SIDE]``: ``restore_iter`` on a SIDE x SIDE uint8 image, end to end
  (uint8 in and out, the engine built, tiles chosen from free memory), one warm-up run then one
  timed run; MP/s, the tile, the peak CUDA memory of the timed run (``max_memory_allocated`` after
  ``reset_peak_memory_stats``); and the network alone: ``Engine.forward`` on one window of at most
  one tile, its MP/s and the TFLOP/s that makes (conv FLOPs counted by ``benchmark.conv_flops_per_pixel``).
* ``paper_bf16_goal``: the paper model's best bf16 MP/s against the issue's 40 MP/s (H100/H200 class).
* ``profile[paper,bf16]``: the torch profiler's top 15 operations of one forward (own CUDA time).
* ``effect[cudnn.benchmark]`` / ``effect[channels_last]``: the same forward with the switch on and off.
"""

from __future__ import annotations

import copy
import inspect
import sys
import time

from _common import api

GOAL_MP_S = 40.0  # issue #16: M6R6 C64 in bf16 on an H100/H200-class GPU
GPU_SIDES = (512, 1024, 2048, 4096)
SMOKE_SIDES = (64, 128)
FAST_ARCH = {"blocks": 4, "recursions": 4, "channels": 48}  # the fast MemNet of the space-to-depth work


def paper_model(ctx):
    """The paper's M6R6 C64 (the bundled denoiser; smoke: the tiny random net)."""
    return ctx.task_model("denoise"), "M6R6 C64 (memnet-denoise)" if not ctx.smoke else "tiny M2R2 C8 (smoke)"


def fast_model(ctx):
    """A bundled model whose card has unshuffle > 1, else an untrained MemNet M4R4 C48 with
    unshuffle 2 where this checkout has that option, else M4R4 C48 without it (said so)."""
    from napari_memnet.benchmark import random_memnet
    from napari_memnet.models import MemNetConfig, build_model

    list_models, load_model = api("list_models"), api("load_model")

    for info in list_models():
        if info.source == "bundled" and int(info.card.get("config", {}).get("unshuffle", 1)) > 1:
            return load_model(info.path), f"bundled {info.name} {info.card['config']}"
    arch = dict(FAST_ARCH) if not ctx.smoke else {"blocks": 1, "recursions": 1, "channels": 8}
    if "unshuffle" in getattr(MemNetConfig, "__dataclass_fields__", {}):
        arch["unshuffle"] = 2
        note = f"untrained MemNet {arch}"
    else:
        note = f"untrained MemNet {arch}: this checkout's MemNetConfig has no 'unshuffle', so no space-to-depth"
    if "unshuffle" in arch:
        net = build_model("memnet", arch).eval()
    else:
        net = random_memnet(arch["blocks"], arch["recursions"], arch["channels"], seed=1)
    return load_model(net, task="denoise"), note


def _flops_per_pixel(model) -> float:
    from napari_memnet.benchmark import conv_flops_per_pixel

    net = copy.deepcopy(model.network).cpu()
    return float(conv_flops_per_pixel(net, side=32)["total"])


def _forward_rate(ctx, engine, side, repeats=2):
    """(MP/s, seconds) of Engine.forward on one side x side window, best of ``repeats`` after a warm-up."""
    import numpy as np

    from _common import sync

    plane = np.random.default_rng(8).random((side, side), dtype=np.float32)
    engine.forward(plane)
    sync(ctx.device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        y = engine.forward(plane)
        sync(ctx.device)
        best = min(best, time.perf_counter() - t0)
        del y
    return side * side / 1e6 / best, best


def measure(ctx, model, label, precision, side, flops_px, results):
    import numpy as np
    import torch

    from _common import sample_plane, sync

    Engine, restore_iter = api("Engine"), api("restore_iter")

    img = sample_plane(side)
    noisy = np.clip(img + np.random.default_rng(9).normal(0, 25, img.shape), 0, 255).astype(np.uint8)
    kw = {"model": model, "device": ctx.device, "precision": precision}
    for _ in restore_iter(noisy, "denoise", **kw):  # warm-up: kernels, cuDNN set-up, allocator
        pass
    if ctx.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sync(ctx.device)
    t0 = time.perf_counter()
    result = None
    for item in restore_iter(noisy, "denoise", **kw):
        result = item
    sync(ctx.device)
    seconds = time.perf_counter() - t0
    value = {"model": label, "side": side, "precision": result.precision, "device": result.device,
             "tile": result.tile_size, "seconds": seconds, "mp_per_s": side * side / 1e6 / seconds,
             "peak_cuda_gib": torch.cuda.max_memory_allocated() / 2**30 if ctx.cuda else None,
             "peak_cuda_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if ctx.cuda else None}
    engine = Engine(model, device=ctx.device, precision=precision)
    window = min(side, engine.tile + 2 * engine.halo)
    rate, fwd_s = _forward_rate(ctx, engine, window)
    value.update(forward_window=window, forward_seconds=fwd_s, forward_mp_per_s=rate,
                 forward_tflop_per_s=rate * 1e6 * flops_px / 1e12, flop_per_pixel=flops_px)
    results.setdefault((label, precision), []).append(value)
    return True, value


def goal(ctx, results, paper_label):
    rows = results.get((paper_label, "bf16"), [])
    if not rows:
        return None, "skipped: no bf16 throughput of the paper model was measured"
    best = max(rows, key=lambda r: r["mp_per_s"])
    value = {"goal_mp_per_s": GOAL_MP_S, "best_mp_per_s": best["mp_per_s"], "at_side": best["side"],
             "best_forward_mp_per_s": max(r["forward_mp_per_s"] for r in rows),
             "by_side": {r["side"]: round(r["mp_per_s"], 2) for r in rows}}
    return best["mp_per_s"] >= GOAL_MP_S, value


def profile(ctx, model, results, paper_label):
    """Top 15 operations of one bf16 forward of the paper model (own CUDA time; CPU time on the CPU)."""
    import numpy as np

    from _common import profile_table

    engine = api("Engine")(model, device=ctx.device, precision="bf16" if ctx.cuda else "fp32")
    side = min(2048 if ctx.cuda else 64, engine.tile + 2 * engine.halo)
    plane = np.random.default_rng(10).random((side, side), dtype=np.float32)
    engine.forward(plane)  # warm-up
    table = profile_table(lambda: engine.forward(plane), ctx.device, rows=15)
    rows = results.get((paper_label, "bf16"), [])
    table.update(side=side, precision=engine.precision,
                 goal_met=bool(rows) and max(r["mp_per_s"] for r in rows) >= GOAL_MP_S)
    return True, table


def effect(ctx, model, switch):
    """The paper model's forward MP/s with ``switch`` on and off (bf16 on CUDA, fp32 on the CPU)."""
    import torch

    Engine = api("Engine")
    # channels_last: Engine(channels_last=...) where the engine takes it, else its module's CHANNELS_LAST switch
    by_argument = "channels_last" in inspect.signature(Engine).parameters
    home = sys.modules[Engine.__module__]
    if switch == "channels_last" and not by_argument and not hasattr(home, "CHANNELS_LAST"):
        return None, "skipped: this engine has no channels_last switch"
    precision = "bf16" if ctx.cuda else "fp32"
    side = 2048 if ctx.cuda else 64
    out = {"side": side, "precision": precision}
    saved_cl, saved_bench = getattr(home, "CHANNELS_LAST", None), torch.backends.cudnn.benchmark
    try:
        for state in (False, True):
            kw = {}
            if switch == "channels_last" and by_argument:
                kw["channels_last"] = state
            elif switch == "channels_last":
                home.CHANNELS_LAST = state
            else:
                torch.backends.cudnn.benchmark = state
            engine = Engine(model, device=ctx.device, precision=precision, **kw)
            out[f"{'on' if state else 'off'}_mp_per_s"] = _forward_rate(ctx, engine, min(side, engine.tile))[0]
    finally:
        torch.backends.cudnn.benchmark = saved_bench
        if hasattr(home, "CHANNELS_LAST"):
            home.CHANNELS_LAST = saved_cl
    out["on_over_off"] = out["on_mp_per_s"] / out["off_mp_per_s"]
    out["engine_default"] = ("on (CUDA and CPU)" if switch == "channels_last"
                             else f"torch default: {saved_bench}")
    return True, out


def checks(ctx, report):
    """(name, fn, skip reason, heavy) for device_check.main."""
    results: dict = {}
    sides = SMOKE_SIDES if ctx.smoke else GPU_SIDES
    one_side = sides[0] if ctx.smoke else 1024
    state: dict = {}

    def models():
        if not state:
            paper, paper_label = paper_model(ctx)
            fast, fast_label = fast_model(ctx)
            state.update(paper=(paper, paper_label, _flops_per_pixel(paper)),
                         fast=(fast, fast_label, _flops_per_pixel(fast)))
            report.data["models"] = {"paper": {"label": paper_label, "flop_per_pixel": state["paper"][2]},
                                     "fast": {"label": fast_label, "flop_per_pixel": state["fast"][2]}}
        return state

    def one(which, precision, side):
        def run():
            model, label, flops = models()[which]
            return measure(ctx, model, label, precision, side, flops, results)
        return run

    out = []
    for which in ("paper", "fast"):
        out += [(f"throughput[{which},bf16,{s}]", one(which, "bf16", s), None, True) for s in sides]
        out.append((f"throughput[{which},fp32,{one_side}]", one(which, "fp32", one_side), None, True))
    out.append(("paper_bf16_goal", lambda: goal(ctx, results, models()["paper"][1]),
                ctx.no_cuda and f"{ctx.no_cuda}; the goal is for an H100/H200-class GPU", False))
    out.append(("profile[paper,bf16]", lambda: profile(ctx, models()["paper"][0], results, models()["paper"][1]),
                None, True))
    out.append(("effect[cudnn.benchmark]", lambda: effect(ctx, models()["paper"][0], "cudnn_benchmark"),
                ctx.no_cuda, True))
    out.append(("effect[channels_last]", lambda: effect(ctx, models()["paper"][0], "channels_last"), None, True))
    return out
