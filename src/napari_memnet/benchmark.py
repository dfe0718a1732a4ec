"""``memnet bench``: throughput and peak memory of ``restore`` against a plain
reference forward of the same weights, each case in its own subprocess.

The reference is what a straightforward PyTorch user would run: the same
network in eval mode with ``gate_mode="concat"`` (the literal concatenating
gate), no BatchNorm folding, fp32, the whole image in one forward, contiguous
(not channels_last) memory, under ``torch.no_grad()``. ``restore`` is the
engine as shipped: uint8 image in, uint8 out, BN-folded module, tiles with a
halo, ``torch.inference_mode()``, the device's automatic precision.

Each case runs in a fresh ``python -m napari_memnet.benchmark CASE_JSON``
child so its peak resident memory (``ru_maxrss`` of the child, which includes
the ~0.3 GiB of the Python + torch runtime) is its own. On CUDA the peak
allocated device memory is reported too. A reference case whose estimated
memory exceeds 80 % of the available RAM is skipped, not run.

``max_tiles`` stops a restore case after that many tiles (via ``cancel``):
for images too big to finish on a small CPU it still measures the
steady-state tile throughput and the peak memory with every full-size
buffer allocated; the output buffers that the stopped run had not yet
written are added to give an upper bound (``peak_rss_bound_gib``).

The CPU's speeds differ by machine (up to 7x for the same network here), so the
results carry the CPU (``core.machine``) and, on the CPU, its measured fp32
matrix-product rate beside the convolution GFLOP/s that ``restore`` attained.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from .core.devices import available_ram

GIB = 1024**3
WARMUP_SIDE = 48


def random_memnet(blocks: int = 6, recursions: int = 6, channels: int = 64, *, seed: int = 0,
                  residual_std: float = 0.05):
    """An untrained MemNet with random weights AND random BatchNorm statistics
    (so folding is exercised for real) and a reconstruction conv large enough
    that the output visibly differs from the input. Speed does not depend on
    training, so ``memnet bench`` uses this when no model is named."""
    import torch

    from .core.seeding import seeded_torch
    from .models import build_model

    gen = torch.Generator().manual_seed(seed)
    with seeded_torch(seed):
        net = build_model("memnet", {"blocks": blocks, "recursions": recursions, "channels": channels})
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
        w = net.reconstruct.conv.weight
        w.copy_(torch.randn(w.shape, generator=gen) * residual_std)
    return net.eval()


def _network(case: dict):
    if case.get("model"):
        from .models.files import load_model

        return load_model(case["model"]).network.eval()
    return random_memnet(*case.get("mrc", (6, 6, 64)), seed=0)


def conv_flops_per_pixel(network, side: int = 16) -> dict:
    """Convolution FLOPs (2 x multiply-adds) per output pixel of the plain
    network, counted with forward hooks (shared recursion convs count every
    time they run): ``{"total": ..., "conv3x3": ...}``."""
    import torch

    counts = {"total": 0, "conv3x3": 0}

    def hook(mod, _inp, out):
        flops = 2 * out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        counts["total"] += flops
        if mod.kernel_size == (3, 3):
            counts["conv3x3"] += flops

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    gate_mode = getattr(network, "gate_mode", None)
    try:
        if gate_mode is not None:
            network.gate_mode = "concat"  # the gate as one 1x1 conv module call
        with torch.no_grad():
            network.eval()(torch.zeros(1, network.in_channels, side, side))
    finally:
        for h in handles:
            h.remove()
        if gate_mode is not None:
            network.gate_mode = gate_mode
    return {k: v / (side * side) for k, v in counts.items()}


def reference_bytes(network, side: int) -> int:
    """Estimated peak activation bytes of the reference (concat gate, fp32) forward."""
    cfg = getattr(network, "config", None)
    c = int(getattr(cfg, "channels", 64))
    m = int(getattr(cfg, "blocks", 6))
    r = int(getattr(cfg, "recursions", 6))
    return 4 * c * side * side * ((m + r) + (m + 1) + r + 4)


# ---------------------------------------------------------------------------- child side
def _peak_rss() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def run_case(case: dict) -> dict:
    """Run one case in this process and return its measurements."""
    import numpy as np
    import torch

    from .core.devices import resolve_device

    if case["kind"] == "matmul":  # the CPU's fp32 matrix-product rate, in a process of its own like the others
        from .core.machine import matmul_gflops

        return {"kind": "matmul", "threads": torch.get_num_threads(), "gflops": matmul_gflops()}
    device = resolve_device(case["device"])
    side = int(case["size"])
    net = _network(case)
    img = (np.random.default_rng(0).random((side, side)) * 255).astype(np.uint8)
    small = img[:WARMUP_SIDE, :WARMUP_SIDE]
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    out: dict = {"kind": case["kind"], "size": side, "device": str(device), "threads": torch.get_num_threads()}
    if case["kind"] == "reference":
        net.gate_mode = "concat"
        net = net.to(device).eval()
        with torch.no_grad():
            net(torch.from_numpy(small.astype(np.float32) / 255)[None, None].to(device))
            x = torch.from_numpy(img.astype(np.float32) / 255)[None, None].to(device)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            sync()
            t0 = time.perf_counter()
            y = net(x)
            sync()
            seconds = time.perf_counter() - t0
            _ = y.cpu()
        out.update(precision="fp32", seconds=seconds, megapixels=side * side / 1e6)
    else:
        from .restoration.eager import restore_iter
        from .restoration.engine import Engine
        from .restoration.events import Cancelled

        engine = Engine(net, device=str(device), precision=case.get("precision", "auto"),
                        tile_size=case.get("tile"), channels_last=case.get("channels_last"))
        kwargs = {"model": engine}
        for _ in restore_iter(small, "denoise", **kwargs):
            pass
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        max_tiles = case.get("max_tiles")
        done = total = 0
        result = None
        sync()
        t0 = time.perf_counter()
        try:
            for item in restore_iter(img, "denoise", cancel=lambda: bool(max_tiles) and done >= max_tiles,
                                     **kwargs):
                if hasattr(item, "done"):
                    done, total = item.done, item.total
                else:
                    result = item
        except Cancelled:
            pass
        sync()
        seconds = time.perf_counter() - t0
        fraction = 1.0 if result is not None else done / max(total, 1)
        out["channels_last"] = case.get("channels_last")
        out.update(precision=result.precision if result else case.get("precision", "auto"),
                   tile=result.tile_size if result else case.get("tile"), seconds=seconds,
                   megapixels=side * side / 1e6 * fraction, tiles_done=done, tiles_total=total,
                   complete=result is not None)
        if result is None:  # output buffers the stopped run had not written yet (float32 plane + uint8 out)
            out["unwritten_bytes"] = int(side * side * 5 * (1 - fraction))
    out["mp_per_s"] = out["megapixels"] / out["seconds"]
    out["peak_rss_gib"] = _peak_rss() / GIB
    if cuda:
        out["peak_cuda_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    return out


# ---------------------------------------------------------------------------- parent side
def _child_env() -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn_case(case: dict, timeout: float | None = None) -> dict:
    """Run ``case`` in a fresh Python process; return its result dict (or an error)."""
    cmd = [sys.executable, "-m", "napari_memnet.benchmark", json.dumps(case)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {**case, "error": f"exit code {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def environment() -> dict:
    """Python, torch, the CPU (``core.machine.describe_cpu``) and the load."""
    import torch

    from .core.machine import describe_cpu

    cpu = describe_cpu()
    env = {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
           "processor": cpu["name"], "cpu": cpu, "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(),
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
           "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    return env


def run_benchmark(sizes, *, device="cpu", model=None, precision="auto", tile=None, reference=True,
                  max_tiles=None, timeout=None, channels_last=None, versus=None, versus_max_tiles=None,
                  log=print) -> dict:
    """Every size: one restore case and (unless ``reference=False``) one reference case; with
    ``versus`` (another model) also that model's restore case right after (alternating per size),
    and ``ratio`` = MP/s of ``model`` / MP/s of ``versus`` (``versus_max_tiles`` bounds its run)."""
    net = _network({"model": model})
    # before the cases, in a fresh process: in this one, after them, it measured less than half
    peak = spawn_case({"kind": "matmul"}, timeout).get("gflops") if device == "cpu" else None
    rows = []
    for side in sizes:
        base = {"size": int(side), "device": device, "model": model}
        res = spawn_case({**base, "kind": "restore", "precision": precision, "tile": tile,
                          "max_tiles": max_tiles, "channels_last": channels_last}, timeout)
        other = None
        if versus is not None:
            other = spawn_case({**base, "model": versus, "kind": "restore", "precision": precision, "tile": tile,
                                "max_tiles": versus_max_tiles, "channels_last": channels_last}, timeout)
        ref = None
        if reference:
            need, have = reference_bytes(net, side), available_ram()
            if need > 0.8 * have and device == "cpu":
                ref = {**base, "kind": "reference",
                       "skipped": f"needs ~{need / GIB:.1f} GiB, {have / GIB:.1f} GiB available"}
            else:
                ref = spawn_case({**base, "kind": "reference"}, timeout)
        row = {"size": int(side), "restore": res, "reference": ref}
        if ref and "mp_per_s" in ref and "mp_per_s" in res:
            row["speedup"] = res["mp_per_s"] / ref["mp_per_s"]
        if other is not None:
            row["versus"] = {"model": versus, **other}
            if "mp_per_s" in other and "mp_per_s" in res:
                row["ratio"] = res["mp_per_s"] / other["mp_per_s"]
        rows.append(row)
        log(format_row(row))
    flops = conv_flops_per_pixel(net)
    log(f"convolution work: {flops['total'] / 1e6:.2f} MFLOP per pixel, "
        f"{100 * flops['conv3x3'] / flops['total']:.1f} % of it in 3x3 convolutions")
    env = environment()
    if peak is not None:
        env["matmul_gflops"] = round(peak, 1)
    for row in rows:
        if "mp_per_s" in row["restore"]:
            row["gflops"] = row["restore"]["mp_per_s"] * flops["total"] / 1e3
    attained = [f"{row['size']} px {row['gflops']:.1f}" for row in rows if "gflops" in row]
    if attained:
        log("convolution GFLOP/s of restore: " + ", ".join(attained)
            + (f" (fp32 matrix products on this CPU: {peak:.1f} GFLOP/s)" if peak else ""))
    return {"environment": env, "device": device, "model": model or "random M6R6 C64",
            "versus": versus, "flops_per_pixel": flops, "rows": rows}


def _fmt_case(case: dict | None) -> str:
    if case is None:
        return "not run"
    if "error" in case:
        return f"error: {case['error']}"
    if "skipped" in case:
        return f"skipped ({case['skipped']})"
    text = f"{case['mp_per_s']:.4f} MP/s, peak RSS {case['peak_rss_gib']:.2f} GiB"
    if "peak_cuda_gib" in case:
        text += f", peak CUDA {case['peak_cuda_gib']:.2f} GiB"
    if case.get("complete") is False:
        bound = case["peak_rss_gib"] + case["unwritten_bytes"] / GIB
        text += f" (stopped after {case['tiles_done']}/{case['tiles_total']} tiles; RSS bound {bound:.2f} GiB)"
    return text


def format_row(row: dict) -> str:
    res = row["restore"]
    extra = f" [{res.get('precision')}, tile {res.get('tile')}]" if "error" not in res else ""
    speed = f"  speed-up x{row['speedup']:.2f}" if "speedup" in row else ""
    text = (f"{row['size']:>5} px  restore: {_fmt_case(res)}{extra}\n"
            f"{'':>5}     reference: {_fmt_case(row['reference'])}{speed}")
    if "versus" in row:
        ratio = f"  {row['ratio']:.2f}x faster" if "ratio" in row else ""
        text += f"\n{'':>5}     versus {row['versus']['model']}: {_fmt_case(row['versus'])}{ratio}"
    return text


if __name__ == "__main__":  # the child process of spawn_case
    print(json.dumps(run_case(json.loads(sys.argv[1]))))


# ---------------------------------------------------------------------------- precision check
def precision_check(folder, *, model=None, device="cpu", precisions=("fp32", "bf16"), sigma=25.0, crop=None,
                    seed=0) -> dict:
    """Denoise every PNG in ``folder`` (e.g. Set12) at noise ``sigma`` with each
    precision; report time, mean PSNR against the clean image and the largest
    difference from the fp32 output. ``crop`` takes the centre crop of that side."""
    import numpy as np
    from PIL import Image

    from .core.degrade import add_noise
    from .restoration.eager import restore_plane
    from .core.metrics import psnr
    from .models.files import load_model

    loaded = load_model(model) if model else load_model(random_memnet(seed=0))
    paths = sorted(Path(folder).glob("*.png"))
    if not paths:
        raise ValueError(f"no PNG images in {folder}")
    rng = np.random.default_rng(seed)
    pairs = []
    for path in paths:
        with Image.open(path) as im:
            clean = np.asarray(im.convert("L"), dtype=np.float32) / 255
        if crop:
            h, w = clean.shape
            y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            clean = clean[y0:y0 + crop, x0:x0 + crop]
        pairs.append((clean, np.asarray(add_noise(clean, sigma, rng=rng), dtype=np.float32)))
    rows = {}
    base = None
    for precision in precisions:
        restore_plane(loaded, pairs[0][1][:32, :32], device=device, precision=precision)  # warm-up
        t0 = time.perf_counter()
        outs = [restore_plane(loaded, noisy, device=device, precision=precision) for _, noisy in pairs]
        seconds = time.perf_counter() - t0
        if base is None:
            base = outs
        rows[precision] = {
            "seconds": seconds,
            "psnr": float(np.mean([psnr(o, c) for o, (c, _) in zip(outs, pairs)])),
            "max_abs_diff_vs_first": float(max(np.abs(o - b).max() for o, b in zip(outs, base))),
        }
    first = rows[precisions[0]]
    for row in rows.values():
        row["psnr_delta_db"] = row["psnr"] - first["psnr"]
        row["speed_vs_first"] = first["seconds"] / row["seconds"]
    return {"model": loaded.name if model else "random M6R6 C64 (untrained)", "images": len(pairs),
            "sigma": sigma, "crop": crop, "device": device, "precisions": rows, "environment": environment()}
