"""Why the CPU forward keeps its feature maps in a workspace: one M6R6 C64 tile
through ``FusedMemNet.forward_allocating`` (a fresh tensor per op) and
``FusedMemNet.forward_in_workspace`` (M + 4 reused buffers, convs added in
place), alternating, in the same process and thread, with the wall time, the
user and system CPU time and the minor page faults of each; plus the rate of
one plain 64 -> 64 3x3 convolution (oneDNN) for scale.

    PYTHONPATH=src python benchmarks/cpu_forward.py --side 512 --repeats 2 [--thread] [--json FILE]

``--thread`` runs the forwards in a worker thread, as napari's thread_worker
does (glibc then serves the tensors from a per-thread arena, with the same
mmap behaviour for big tensors). Untrained weights with random BatchNorm
statistics (``benchmark.random_memnet``): speed does not depend on training.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from napari_memnet.benchmark import random_memnet  # noqa: E402
from napari_memnet.models import inference_module  # noqa: E402


def measure(fn) -> dict:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with torch.inference_mode():
        fn()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": wall, "user_s": r1.ru_utime - r0.ru_utime, "system_s": r1.ru_stime - r0.ru_stime,
            "minor_page_faults": r1.ru_minflt - r0.ru_minflt}


def conv_rate(side: int, repeats: int = 5) -> float:
    """GFLOP/s of F.conv2d 64 -> 64, 3x3, on a channels_last side x side map."""
    x = torch.randn(1, 64, side, side).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(64, 64, 3, 3) * 0.05, torch.randn(64)
    with torch.inference_mode():
        F.conv2d(x, w, b, padding=1)
        t0 = time.perf_counter()
        for _ in range(repeats):
            F.conv2d(x, w, b, padding=1)
        dt = (time.perf_counter() - t0) / repeats
    return 2 * 9 * 64 * 64 * side * side / dt / 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--thread", action="store_true", help="run the forwards in a worker thread")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    module = inference_module(random_memnet())
    x = (torch.rand(1, 1, args.side, args.side) * 255).contiguous(memory_format=torch.channels_last)
    forms = {"allocating": module.forward_allocating, "workspace": module.forward_in_workspace}
    with torch.inference_mode():
        small = x[..., :48, :48].contiguous(memory_format=torch.channels_last)
        a, w = forms["allocating"](x[..., :96, :96]), forms["workspace"](x[..., :96, :96])
        diff = float((a - w).abs().max() / a.abs().max())  # relative: random BN stats make outputs huge
        for fn in forms.values():
            fn(small)  # warm-up: oneDNN primitives, lazy init
    rows = []

    def run():
        for r in range(args.repeats):
            for name, fn in forms.items():
                m = measure(lambda fn=fn: fn(x))
                rows.append({"form": name, "repeat": r, **m})
                print(f"{name:>10}  {m['seconds']:7.2f} s  user {m['user_s']:6.1f} s  system {m['system_s']:6.1f} s  "
                      f"minor page faults {m['minor_page_faults']:>9d}", flush=True)

    if args.thread:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    else:
        run()
    best = {name: min(r["seconds"] for r in rows if r["form"] == name) for name in forms}
    rate = conv_rate(min(args.side, 256))
    print(f"side {args.side}{' (worker thread)' if args.thread else ''}: workspace is "
          f"{best['allocating'] / best['workspace']:.2f}x faster (best of {args.repeats}); "
          f"max relative difference on a 96 px crop {diff:.2g}; one 64->64 3x3 conv: {rate:.0f} GFLOP/s")
    if args.json:
        from napari_memnet.core.atomic import atomic_write_text

        record = {"side": args.side, "thread": args.thread, "torch_threads": torch.get_num_threads(),
                  "load_average_1min": os.getloadavg()[0], "rows": rows, "best_seconds": best,
                  "speedup": best["allocating"] / best["workspace"], "max_relative_difference_96px": diff,
                  "conv3x3_gflops": rate}
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
