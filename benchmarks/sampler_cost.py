"""Does drawing and degrading the batches starve the trainer? Per task, the CPU time of
``PatchSampler.batch`` (crops, flips, and the task's degradation: Gaussian noise, the
precomputed bicubic input, Pillow JPEG encoding) against a whole ``Trainer.train_step``
of a fast MemNet (which includes the batch), in one process, alternating.

    python benchmarks/sampler_cost.py --threads 1 --batch 8 --patch 48 --json docs/results/sampler_cost.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

FAST = {"blocks": 4, "recursions": 4, "channels": 48, "unshuffle": 2}
DATA = {"denoise": ["Train400"], "sr": ["T91", "BSD200"], "deblock": ["T91", "BSD200"]}


def measure(task: str, data: Path, batch: int, patch: int, repeats: int, images: int) -> dict:
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    files = sorted(p for d in DATA[task] for p in (data / "train" / d).iterdir())[:images]
    cfg = TrainConfig(task=task, arch=FAST, batch_size=batch, patch_size=patch, steps=10**6, val_count=1,
                      val_crop=48, recalibrate_batches=0, name="cost")
    trainer = Trainer(cfg, clean=[str(p) for p in files])
    trainer.train_step()  # warm-up
    sr = trainer.sampler.sr_inputs
    t0 = time.process_time()
    if sr is not None:  # SR: the once-per-image-and-scale inputs, computed before timing (the steady state)
        for i in range(len(trainer.sampler.items)):
            for s in cfg.levels:
                sr.get(i, s)
    once = time.process_time() - t0
    sample, step = [], []
    for _ in range(repeats):
        t0 = time.process_time()
        trainer.sampler.batch(batch)
        sample.append(time.process_time() - t0)
        t0 = time.process_time()
        trainer.train_step()
        step.append(time.process_time() - t0)
    s, t = sorted(sample)[len(sample) // 2], sorted(step)[len(step) // 2]
    return {"task": task, "batch_cpu_s": round(s, 5), "train_step_cpu_s": round(t, 4),
            "fraction": round(s / t, 4), "images": len(files),
            "precompute_cpu_s_per_image": round(once / len(trainer.sampler.items), 4) if sr is not None else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--images", type=int, default=40, help="training images per task (the first N by name)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for task in DATA:
        row = measure(task, args.data, args.batch, args.patch, args.repeats, args.images)
        rows.append(row)
        print(f"{task:8s} batch {row['batch_cpu_s'] * 1000:7.1f} ms  train step {row['train_step_cpu_s'] * 1000:7.1f} ms"
              f"  ({100 * row['fraction']:.1f} % of a step)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
