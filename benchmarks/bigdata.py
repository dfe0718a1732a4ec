"""Out-of-core restoration benchmark: zarr in -> zarr out, 1 vs 2 dask workers.

    PYTHONPATH=src python benchmarks/bigdata.py                      # 16384 x 16384, M1R1 C8, 1 and 2 workers
    PYTHONPATH=src python benchmarks/bigdata.py --size 4096 --workers 2
    PYTHONPATH=src python benchmarks/bigdata.py --workdir /tmp/memnet-bigdata --keep
    PYTHONPATH=src python benchmarks/bigdata.py exactness           # lazy blocks vs untiled, max |diff|

The input is a synthetic-degraded gray image built from REAL photographs: the
plane is tiled with 512 x 512 crops of the Urban100 (Y channel) test images
(``../shared/data/test/Urban100_Y``, cycling through them, each crop mirrored
when the photo is smaller), then Gaussian noise of sigma 25 (8-bit scale) is
added and the result rounded to uint8. It is written chunk by chunk (1024 x
1024) into ``<workdir>/input.zarr``, so building it needs little memory too.

Each run happens in a fresh child process (``run`` subcommand) that starts a
``dask.distributed.LocalCluster`` of N single-threaded worker processes on
127.0.0.1 and calls ``zarr_io.restore_to_zarr`` with the cluster's address.
Peak memory is ``ru_maxrss`` of the child (the client) and of each worker
(read on the worker itself just before shutdown); the image is never held in
one process. ``worker_cpu_s_per_mp`` is the workers' CPU time (user + system)
during the run per megapixel: unlike wall time it does not depend on what
else the machine runs. The load average before and after each run is printed
too, since wall times on a busy machine say little about scaling.

The model is a MemNet M1R1 C8 with random weights (throughput only: weights
do not change the cost). The paper's M6R6 C64 (6 blocks of 6 recursions at
64 channels) costs far more per pixel and would take hours for 268 MP on a
2-core CPU; ``--model 6 6 64`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "test" / "Urban100_Y"
CHUNK = 1024
CROP = 512


def build_input(path: Path, size: int, sigma: float = 25.0, seed: int = 0) -> None:
    """Write the degraded ``size`` x ``size`` uint8 image into zarr ``path``."""
    import numpy as np
    import zarr
    from PIL import Image

    from napari_memnet.core.degrade import add_noise

    photos = sorted(DATA.glob("*.png"))
    if not photos:
        raise SystemExit(f"no images in {DATA}: the real data set is needed (see shared/data/README.md)")
    z = zarr.create_array(str(path), shape=(size, size), chunks=(CHUNK, CHUNK), dtype="u1", zarr_format=2,
                          overwrite=True)
    rng = np.random.default_rng(seed)
    k = 0
    for y0 in range(0, size, CHUNK):
        for x0 in range(0, size, CHUNK):
            h, w = min(CHUNK, size - y0), min(CHUNK, size - x0)
            block = np.empty((h, w), dtype=np.float32)
            for ty in range(0, h, CROP):
                for tx in range(0, w, CROP):
                    photo = np.asarray(Image.open(photos[k % len(photos)]).convert("L"), dtype=np.float32)
                    k += 1
                    if photo.shape[0] < CROP or photo.shape[1] < CROP:
                        photo = np.pad(photo, ((0, max(0, CROP - photo.shape[0])),
                                               (0, max(0, CROP - photo.shape[1]))), mode="symmetric")
                    oy = int(rng.integers(0, photo.shape[0] - CROP + 1))
                    ox = int(rng.integers(0, photo.shape[1] - CROP + 1))
                    th, tw = min(CROP, h - ty), min(CROP, w - tx)
                    block[ty:ty + th, tx:tx + tw] = photo[oy:oy + th, ox:ox + tw]
            noisy = add_noise(block / 255.0, sigma, rng=rng) * 255.0
            z[y0:y0 + h, x0:x0 + w] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(args) -> None:
    """The measured run (in its own process): LocalCluster + restore_to_zarr."""
    import distributed
    import torch

    from napari_memnet import save_model

    from napari_memnet.restoration.lazy import zarr_io
    from napari_memnet.models import build_model

    torch.manual_seed(0)
    blocks, recursions, channels = args.model
    net = build_model("memnet", {"in_channels": 1, "blocks": blocks, "recursions": recursions,
                                 "channels": channels})
    models_dir = Path(args.workdir) / "models"
    info = save_model(net, "bench-tiny", task="denoise", directory=models_dir)
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(args.workers)
        cpu_before = client.run(_cpu_seconds)
        start = time.perf_counter()
        report = zarr_io.restore_to_zarr(args.src, args.dst, "denoise", model=str(info.path), device="cpu",
                                         precision="fp32", chunks=CHUNK, scheduler=client, resume=False)
        seconds = time.perf_counter() - start
        workers = client.run(_peak_rss_mib)
        cpu_after = client.run(_cpu_seconds)
        worker_cpu = sum(cpu_after[w] - cpu_before.get(w, 0.0) for w in cpu_after)
    megapixels = report.shape[0] * report.shape[1] / 1e6
    print(json.dumps({
        "workers": args.workers, "shape": list(report.shape), "chunks": report.chunks_total,
        "model": f"MemNet M{blocks}R{recursions} C{channels}", "seconds": round(seconds, 1),
        "mp_per_s": round(megapixels / seconds, 3), "client_peak_rss_mib": round(_peak_rss_mib(), 1),
        "worker_peak_rss_mib": sorted(round(v, 1) for v in workers.values()),
        "worker_cpu_s": round(worker_cpu, 1), "worker_cpu_s_per_mp": round(worker_cpu / megapixels, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }))


def exactness() -> None:
    """Max |lazy blocks - untiled| for denoise and SR x2/x3/x4 on a real photo."""
    import dask.array as da
    import numpy as np
    import torch
    from PIL import Image

    from napari_memnet.restoration.lazy import graph as lazy
    from napari_memnet.core.imresize import imresize
    from napari_memnet.restoration.eager import restore_plane
    from napari_memnet.models import build_model

    torch.manual_seed(0)
    net = build_model("memnet", {"in_channels": 1, "blocks": 2, "recursions": 2, "channels": 16}).eval()
    photo = np.asarray(Image.open(sorted(DATA.glob("*.png"))[0]).convert("L"), dtype=np.float32)[:240, :300] / 255
    for task, scale in (("denoise", None), ("sr", 2), ("sr", 3), ("sr", 4)):
        s = scale or 1
        plane = photo if s == 1 else photo[: 240 // s, : 300 // s]
        result = lazy.restore_dask(da.from_array(plane), task, scale=scale, model=net, chunks=40,
                                   normalization=(0, 1), device="cpu", precision="fp32", cache=False)
        up = plane if s == 1 else np.asarray(imresize(plane, s), dtype=np.float32)
        ref = restore_plane(net, up, device="cpu", precision="fp32", tile_size=4096)
        diff = float(np.abs(result.compute() - ref).max())
        print(json.dumps({"task": task, "scale": s, "input": list(plane.shape), "blocks": result.npartitions,
                          "halo": lazy.plan_of(result).halo, "max_abs_diff": diff}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="one measured run (used internally, in a child process)")
    run.add_argument("--src", required=True)
    run.add_argument("--dst", required=True)
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--workdir", required=True)
    run.add_argument("--model", type=int, nargs=3, default=(1, 1, 8), metavar=("M", "R", "C"))
    sub.add_parser("exactness", help="max difference between lazy blocks and an untiled run")
    parser.add_argument("--size", type=int, default=16384, help="image side in pixels (default 16384)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", type=int, nargs=3, default=(1, 1, 8), metavar=("M", "R", "C"))
    parser.add_argument("--workdir", default="/tmp/memnet-bigdata")
    parser.add_argument("--keep", action="store_true", help="keep the zarr files afterwards")
    args = parser.parse_args()
    if args.command == "run":
        run_child(args)
        return
    if args.command == "exactness":
        exactness()
        return

    import shutil

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / f"input-{args.size}.zarr"
    if not (src / ".zarray").exists():
        t0 = time.perf_counter()
        build_input(src, args.size)
        print(f"built {src} ({args.size} x {args.size}) in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for n in args.workers:
        dst = workdir / f"output-{args.size}-w{n}.zarr"
        cmd = [sys.executable, __file__, "run", "--src", str(src), "--dst", str(dst), "--workers", str(n),
               "--workdir", str(workdir), "--model", *map(str, args.model)]
        before = os.getloadavg()[0]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["largest_process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        row["load_average_before"] = round(before, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            shutil.rmtree(dst, ignore_errors=True)
    print("\n| workers | image | model | seconds | MP/s | worker CPU s / MP | client peak RSS (MiB) "
          "| worker peak RSS (MiB) | load average before, after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['shape'][0]} x {r['shape'][1]} | {r['model']} | {r['seconds']} | "
              f"{r['mp_per_s']} | {r['worker_cpu_s_per_mp']} | {r['client_peak_rss_mib']} | "
              f"{', '.join(map(str, r['worker_peak_rss_mib']))} | {r['load_average_before']}, "
              f"{r['load_average_after']} |")
    if not args.keep:
        shutil.rmtree(src, ignore_errors=True)


if __name__ == "__main__":
    main()
