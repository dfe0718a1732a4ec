"""Which optimizer/schedule reaches a validation PSNR first? A small CPU experiment.

    PYTHONPATH=src python benchmarks/train_optimizers.py --steps 300 --target 27.0

Trains the same tiny MemNet (default M2R2 C16, multi-supervised loss) on the same
Train400 patches (denoising, sigma 25), once per optimizer setting, validating on
held-out Train400 images every ``--every`` steps, and prints for each setting the
first step at which the validation PSNR reached ``--target`` and the PSNR curve.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SETTINGS = {
    "adam-cosine lr1e-3 clip1": {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine", "clip": 1.0},
    "adam-cosine lr1e-3 noclip": {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine", "clip": 1e9},
    "adam-cosine lr3e-3 clip1": {"optimizer": "adam", "lr": 3e-3, "schedule": "cosine", "clip": 1.0},
    "adam-cosine lr1e-2 clip1": {"optimizer": "adam", "lr": 1e-2, "schedule": "cosine", "clip": 1.0},
    "adam-cosine lr3e-2 clip1": {"optimizer": "adam", "lr": 3e-2, "schedule": "cosine", "clip": 1.0},
    "sgd-step lr0.1 clip0.4 (paper)": {"optimizer": "sgd", "lr": 0.1, "schedule": "step", "clip": 0.4},
    "sgd-step lr0.01 clip0.4": {"optimizer": "sgd", "lr": 0.01, "schedule": "step", "clip": 0.4},
    "sgd-cosine lr0.1 clip0.4": {"optimizer": "sgd", "lr": 0.1, "schedule": "cosine", "clip": 0.4},
    "sgd-cosine lr0.1 clip10": {"optimizer": "sgd", "lr": 0.1, "schedule": "cosine", "clip": 10.0},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "Train400"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--target", type=float, default=27.0)
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--images", type=int, default=40, help="training images (the next 4 are held out)")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--recursions", type=int, default=2)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="run only these settings (names as printed)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.data import prepare_data
    from napari_memnet.training.events import Validation
    from napari_memnet.training.trainer import Trainer

    files = sorted(Path(args.data).glob("*.png"))
    train, val = files[: args.images], files[args.images: args.images + 4]
    results = {}
    for label, opt in SETTINGS.items():
        if args.only and label not in args.only:
            continue
        cfg = TrainConfig(task="denoise", levels=(args.sigma, args.sigma), steps=args.steps, batch_size=args.batch,
                          arch={"blocks": args.blocks, "recursions": args.recursions, "channels": args.channels},
                          validate_every=args.every, val_crop=96, threads=args.threads, seed=0, name="bench", **opt)
        data = prepare_data(cfg, clean=[str(f) for f in train], validation=[str(f) for f in val])
        trainer = Trainer(cfg, data=data)
        trainer.save_final_model = lambda seconds: _NoSave()
        curve, t0 = [], time.perf_counter()
        for event in trainer.run():
            if isinstance(event, Validation):
                curve.append((event.step, round(event.psnr, 3)))
        reached = next((s for s, p in curve if p >= args.target), None)
        results[label] = {"first_step_at_target": reached, "final_psnr": curve[-1][1], "curve": curve,
                          "seconds": round(time.perf_counter() - t0, 1), "input_psnr": round(event_input(trainer), 3)}
        print(f"{label:32s} reached {args.target} dB at step {reached}  final {curve[-1][1]:.3f} dB  "
              f"({results[label]['seconds']} s)  curve {curve}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


class _NoSave:  # the experiment keeps no model
    name = "bench"
    path = ""


def event_input(trainer) -> float:
    return trainer.history.get("baseline_psnr") or float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
