"""Held-out validation of a trained model after BatchNorm recalibration on patches of several sizes.

    PYTHONPATH=src python benchmarks/recalibration_patch.py MODEL.safetensors --patches 0,48,64,96,128 \
        --clean-dir .data/train400-train --val-dir .data/train400-val

For each patch size P (0: the model's BatchNorm statistics as saved), the model's BatchNorm
running statistics are set to their exact average over ``--batches`` batches of ``--batch``
training patches of P x P px, degraded as in training (``Trainer.recalibrate``: noise sigma drawn
from ``--levels``, the trainer's patch sampler with its fixed recalibration seed; weights untouched),
and the model is validated as ``memnet train`` validates (the held-out images whole, ``--val-levels``,
eval mode, fp32). Training images only for the statistics; the validation images are the run's
held-out split. ``--save DIR`` writes each recalibrated model (``NAME-bnP``) there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--patches", default="0,48,64,96,128")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--clean-dir", default=".data/train400-train")
    p.add_argument("--val-dir", default=".data/train400-val")
    p.add_argument("--levels", default="0,75")
    p.add_argument("--val-levels", default="15,25,50")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save", type=Path, help="folder for the recalibrated models")
    args = p.parse_args(argv)

    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    levels = tuple(float(v) for v in args.levels.split(","))
    val_levels = tuple(float(v) for v in args.val_levels.split(","))
    name = Path(args.model).stem
    print(f"{name}: held-out validation (dB) after BatchNorm recalibration over {args.batches} batches of "
          f"{args.batch}")
    print("| patch | val PSNR | sigma " + " / ".join(f"{v:g}" for v in val_levels) + " |")
    print("|---|---|---|")
    for patch in (int(v) for v in args.patches.split(",")):
        cfg = TrainConfig(task="denoise", levels=levels, name=f"{name}-bn{patch}", init=args.model,
                          clean_dir=args.clean_dir, val_dir=args.val_dir, val_crop=0, val_levels=val_levels,
                          patch_size=max(patch, 31), batch_size=args.batch, recalibrate_batches=args.batches,
                          steps=1, threads=args.threads, device="cpu", precision="fp32",
                          model_dir=str(args.save) if args.save else None)
        trainer = Trainer(cfg)
        if patch:
            trainer.recalibrate()
        v = trainer.validate()
        levels_text = " / ".join(f"{v.per_level[str(lv)]['psnr']:.3f}" for lv in val_levels)
        print(f"| {patch or 'as saved'} | {v.psnr:.4f} | {levels_text} |", flush=True)
        if args.save and patch:
            trainer.save_final_model(0.0)


if __name__ == "__main__":
    main()
