"""Training throughput: patches/s of the training engine vs a plain fp32 eager loop.

    PYTHONPATH=src python benchmarks/train_throughput.py                 # M6R6 C64, batch 64 of 31x31, CPU (+CUDA)
    PYTHONPATH=src python benchmarks/train_throughput.py --steps 3 --variants engine plain engine-bf16
    PYTHONPATH=src python benchmarks/train_throughput.py --sampler --threads 1      # batch drawing cost per task

Both loops train the same network on the same device in the same process:

* ``plain``: random tensors already on the device, ``net(x)``, MSE on the final
  output, ``backward``, ``SGD.step`` -- the least a training step can do;
* ``engine``: ``Trainer.train_step`` (contiguous NCHW tensors) -- patch sampling from real images, noise on
  the device, the multi-supervised loss, gradient clipping, Adam, lr schedule;
* ``engine-bf16`` / ``engine-channels-last``: the engine with bf16 autocast /
  channels_last memory format (to decide the CPU defaults).

One warm-up step, then ``--steps`` timed steps per variant; prints a JSON line per
(device, variant) and a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "Train400"


def _arch(args) -> dict:
    return {"blocks": args.blocks, "recursions": args.recursions, "channels": args.channels,
            "unshuffle": args.unshuffle}


def _plain(net, device, batch, patch, steps):
    import torch

    x = torch.rand(batch, 1, patch, patch, device=device)
    y = torch.rand(batch, 1, patch, patch, device=device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return _timed(step, steps, device)


def _engine(args, device, precision, channels_last, steps):
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    files = [str(f) for f in sorted(Path(args.data).glob("*.png"))[:8]]
    cfg = TrainConfig(task="denoise", levels=(0, 75), steps=10_000, batch_size=args.batch, patch_size=args.patch,
                      arch=_arch(args),
                      device=str(device), precision=precision, channels_last=channels_last, val_count=0,
                      compile=args.compile)
    trainer = Trainer(cfg, clean=files)
    return _timed(trainer.train_step, steps, device)


def sampler_times(args, device, batches: int = 5) -> list[dict]:
    """ms per ``sampler.batch(args.batch)`` for each task, on 8 T91 images (data preparation cost)."""
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.data import prepare_data
    from napari_memnet.training.sampler import PatchSampler, crop_size

    files = [str(f) for f in sorted((Path(args.data).parent / "T91").glob("*.png"))[:8]]
    rows = []
    for task, levels in (("denoise", (0, 75)), ("sr", (2, 3, 4)), ("deblock", (5, 50))):
        cfg = TrainConfig(task=task, levels=levels, val_count=0, patch_size=args.patch)
        data = prepare_data(cfg, clean=files, min_size=crop_size(task, args.patch, cfg.levels, False))
        sampler = PatchSampler(data.train, task, cfg.levels, args.patch, 0, device)
        seconds = _timed(lambda: sampler.batch(args.batch), batches, device)
        rows.append({"device": str(device), "variant": f"sampler-{task}", "batch": args.batch, "patch": args.patch,
                     "ms_per_batch": round(seconds * 1000, 2)})
    return rows


def _timed(step, steps, device):
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--recursions", type=int, default=6)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--unshuffle", type=int, default=1, help="the fast MemNet's space-to-depth factor (1: the paper's)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--patch", type=int, default=31)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per variant (after one warm-up step)")
    ap.add_argument("--devices", nargs="*", help="default: cpu, and cuda when present")
    ap.add_argument("--variants", nargs="*", default=["plain", "engine"],
                    choices=["plain", "engine", "engine-bf16", "engine-channels-last"])
    ap.add_argument("--compile", action="store_true", help="torch.compile in the engine variants")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", help="append the results as JSON lines to this file")
    ap.add_argument("--sampler", action="store_true",
                    help="instead: time drawing one batch (patches + degradation) for each task")
    args = ap.parse_args(argv)

    import torch

    from napari_memnet.models import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    if args.sampler:
        for dev_name in devices:
            for row in sampler_times(args, torch.device(dev_name)):
                row["threads"] = torch.get_num_threads()
                print(json.dumps(row), flush=True)
        return 0
    rows = []
    for dev_name in devices:
        device = torch.device(dev_name)
        for variant in args.variants:
            torch.manual_seed(0)
            if variant == "plain":
                net = build_model("memnet", _arch(args)).to(device).train()
                seconds = _plain(net, device, args.batch, args.patch, args.steps)
            else:
                precision = "bf16" if variant == "engine-bf16" else "fp32"
                seconds = _engine(args, device, precision, variant == "engine-channels-last", args.steps)
                # "engine" and "engine-bf16" run contiguous (NCHW) tensors, "engine-channels-last" NHWC
            row = {"device": dev_name, "variant": variant, "model": f"M{args.blocks}R{args.recursions}C{args.channels}s{args.unshuffle}",
                   "batch": args.batch, "patch": args.patch, "threads": torch.get_num_threads(),
                   "seconds_per_step": round(seconds, 4), "patches_per_s": round(args.batch / seconds, 2),
                   "torch": torch.__version__}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
    print(f"\n{'device':<6} {'variant':<22} {'s/step':>8} {'patches/s':>10}")
    for r in rows:
        print(f"{r['device']:<6} {r['variant']:<22} {r['seconds_per_step']:>8.3f} {r['patches_per_s']:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
