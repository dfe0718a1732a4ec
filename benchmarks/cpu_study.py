"""Learning-curve study for a CPU training budget (issue #14): which MemNet and
which recipe give the best held-out blind-denoising PSNR for the same CPU time.

    bash benchmarks/denoise_split.sh                      # the fixed Train400 split (392 train / 8 held out)
    nice -n 10 python benchmarks/cpu_study.py --minutes 8 --threads 1 --out runs/study arch-m4r4c48s2 ...
    python benchmarks/cpu_study.py --table runs/study      # the markdown table of every finished candidate

Every candidate trains blind denoising (sigma ~ U[0, 75]) on the 392 training
images with the engine's own ``Trainer.train_step`` for the same budget of
*process CPU time* (``time.process_time``: fair when other work shares the
cores), with a cosine learning rate over that budget. Every ``--val-every``
CPU-seconds (and at the end) it is validated on the 8 held-out Train400 images
(whole 180x180 images, sigma 15/25/50, fixed noise); validation time is not
charged to the budget. Results: ``OUT/NAME.json`` (the curve) per candidate.
No test set is used here: the study only ranks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# per task: training folder, held-out folder, the script that makes them, and the task's levels
# (denoise: sigma range and validation sigmas; sr: scales; deblock: JPEG quality range and validation qualities)
TASK_DATA = {
    "denoise": (".data/train400-train", ".data/train400-val", "denoise_split.sh",
                {"levels": (0.0, 75.0), "val_levels": (15, 25, 50)}),
    "sr": (".data/train291-train", ".data/train291-val", "split291.sh",
           {"levels": (2, 3, 4), "val_levels": (2, 3, 4), "val_crop": 192}),
    "deblock": (".data/train291-train", ".data/train291-val", "split291.sh",
                {"levels": (5, 50), "val_levels": (10, 20), "val_crop": 192}),
}

# the recipe every candidate starts from; a candidate overrides some keys
BASE = {"val_crop": 0,
        "batch_size": 16, "patch_size": 64, "optimizer": "adam", "lr": 2e-3, "lr_min": 1e-5, "loss": "l2",
        "ema": 0.0, "multi_supervised": True, "clip": 1.0, "recalibrate_batches": 0, "seed": 0}


def _arch(m, r, c, s):
    return {"blocks": m, "recursions": r, "channels": c, "unshuffle": s}


CANDIDATES = {
    # round 1: architectures, one recipe
    "arch-paper-m6r6c64": {"arch": _arch(6, 6, 64, 1)},
    "arch-m4r4c48s2": {"arch": _arch(4, 4, 48, 2)},
    "arch-m3r4c64s2": {"arch": _arch(3, 4, 64, 2)},
    "arch-m6r6c64s4": {"arch": _arch(6, 6, 64, 4)},
    "arch-m4r4c96s4": {"arch": _arch(4, 4, 96, 4)},
}


# issue #15: the space-to-depth factor for SR and deblocking, at the fast denoiser's recipe
# (M2R3, batch 8 of 48 px, L1, Adam 2e-3 cosine), from scratch or from the fast denoiser's weights
FAST = {"batch_size": 8, "patch_size": 48, "loss": "l1"}
for _task in ("sr", "deblock"):
    CANDIDATES.update({
        f"{_task}-m2r3c32s1": {"task": _task, "arch": _arch(2, 3, 32, 1), **FAST},
        f"{_task}-m2r3c64s2": {"task": _task, "arch": _arch(2, 3, 64, 2), **FAST},
        f"{_task}-m2r3c64s2-init": {"task": _task, "init": "memnet-fast-denoise", **FAST},
        f"{_task}-m2r3c128s4": {"task": _task, "arch": _arch(2, 3, 128, 4), **FAST},
    })


def recipe_variants(arch: dict, tag: str) -> dict:
    """Round 2: recipe variants around one architecture."""
    return {
        f"{tag}-lr5e-4": {"arch": arch, "lr": 5e-4},
        f"{tag}-lr5e-3": {"arch": arch, "lr": 5e-3},
        f"{tag}-lr1e-2": {"arch": arch, "lr": 1e-2},
        f"{tag}-l1": {"arch": arch, "loss": "l1"},
        f"{tag}-charb": {"arch": arch, "loss": "charbonnier"},
        f"{tag}-ema": {"arch": arch, "ema": 0.999},
        f"{tag}-p96b8": {"arch": arch, "patch_size": 96, "batch_size": 8},
        f"{tag}-p48b32": {"arch": arch, "patch_size": 48, "batch_size": 32},
        f"{tag}-p48b8": {"arch": arch, "patch_size": 48, "batch_size": 8},
        f"{tag}-plain": {"arch": arch, "multi_supervised": False},
    }


def all_candidates() -> dict:
    out = dict(CANDIDATES)
    for name, spec in CANDIDATES.items():
        if name.startswith("arch-") and name != "arch-paper-m6r6c64":
            out.update(recipe_variants(spec["arch"], name.removeprefix("arch-")))
    return out


def cosine(t: float, lr: float, lr_min: float) -> float:
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


def train_for_cpu_budget(trainer, name: str, minutes: float, val_every: float) -> tuple[list, float, float]:
    """Train ``trainer`` for ``minutes`` of process CPU time with a cosine learning rate over that budget,
    validating every ``val_every`` CPU-seconds (not charged) and at the end: (curve, CPU seconds, wall seconds)."""
    cfg = trainer.config
    budget, used, next_val, curve, lr0 = 60.0 * minutes, 0.0, val_every, [], cfg.lr

    def record():
        v = trainer.validate()
        curve.append({"cpu_s": round(used, 1), "step": trainer.step, "psnr": v.psnr,
                      "per_level": {k: round(x["psnr"], 4) for k, x in v.per_level.items()}})
        print(f"{name}: {used:7.0f} cpu-s  step {trainer.step:6d}  val {v.psnr:.3f} dB  {curve[-1]['per_level']}",
              flush=True)

    record()
    t_wall = time.time()
    while used < budget:
        cfg.lr = cosine(used / budget, lr0, cfg.lr_min)
        t0 = time.process_time()
        trainer.train_step()
        used += time.process_time() - t0
        if used >= next_val:
            record()
            next_val += val_every
    if curve[-1]["step"] != trainer.step:
        record()
    return curve, used, time.time() - t_wall


def run_candidate(name: str, spec: dict, minutes: float, val_every: float, out: Path) -> dict:
    import torch

    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    task = spec.get("task", "denoise")
    train_dir, val_dir, _, levels = TASK_DATA[task]
    settings = {**BASE, "task": task, **levels, **spec, "name": name, "steps": 10**9, "schedule": "constant"}
    if "arch" in spec:
        settings["arch"] = dict(spec["arch"])
    cfg = TrainConfig(**settings)
    trainer = Trainer(cfg, clean=str(ROOT / train_dir), validation=str(ROOT / val_dir))
    # how long drawing a batch (crops, augmentation, noise) takes: is it worth moving off the critical path?
    t0 = time.process_time()
    for _ in range(20):
        trainer.sampler.batch(cfg.batch_size)
    data_s = (time.process_time() - t0) / 20
    curve, used, wall = train_for_cpu_budget(trainer, name, minutes, val_every)
    px = trainer.step * cfg.batch_size * cfg.patch_size**2
    result = {"name": name, "spec": {k: v for k, v in settings.items() if k not in ("steps", "name")},
              "threads": torch.get_num_threads(), "cpu_seconds": round(used, 1),
              "wall_seconds": round(wall, 1), "steps": trainer.step,
              "train_pixels_per_cpu_s": round(px / used, 1), "data_seconds_per_batch": round(data_s, 5),
              "data_fraction": round(data_s * trainer.step / used, 4), "parameters": trainer.parameters_count(),
              "final_psnr": curve[-1]["psnr"], "final_per_level": curve[-1]["per_level"], "curve": curve,
              "command": " ".join(sys.argv)}
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out / f"{name}.json")
    return result


def table(out: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    rows.sort(key=lambda r: -r["final_psnr"])
    lines = ["| candidate | CPU min | steps | kpx/CPU-s | data % | val PSNR | per level |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lv = r["final_per_level"]
        levels = " / ".join(f"{lv[k]:.2f}" for k in sorted(lv, key=float))
        lines.append(f"| {r['name']} | {r['cpu_seconds'] / 60:.1f} | {r['steps']} | "
                     f"{r['train_pixels_per_cpu_s'] / 1000:.1f} | {100 * r['data_fraction']:.1f} | "
                     f"{r['final_psnr']:.3f} | {levels} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="candidates to run (see --list)")
    p.add_argument("--minutes", type=float, default=8.0, help="CPU minutes of training per candidate")
    p.add_argument("--val-every", type=float, default=120.0, help="CPU seconds between validations")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "study")
    p.add_argument("--list", action="store_true")
    p.add_argument("--table", type=Path, metavar="OUT", help="print the table of the results in OUT")
    args = p.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    cands = all_candidates()
    if args.list or not args.names:
        print("\n".join(f"{k}: {v}" for k, v in cands.items()))
        return 0
    unknown = [n for n in args.names if n not in cands]
    if unknown:
        p.error(f"unknown candidates {unknown}; see --list")
    for name in args.names:
        train_dir, val_dir, script, _ = TASK_DATA[cands[name].get("task", "denoise")]
        if not (ROOT / train_dir).is_dir() or not (ROOT / val_dir).is_dir():
            p.error(f"run `bash benchmarks/{script}` first (makes {train_dir} and {val_dir})")
    import torch

    torch.set_num_threads(args.threads)
    for name in args.names:
        run_candidate(name, cands[name], args.minutes, args.val_every, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
