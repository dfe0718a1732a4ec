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
sys.path.insert(0, str(ROOT / "benchmarks"))

import heldout  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--patches", default="0,48,64,96,128")
    heldout.add_arguments(p, batch=8)
    p.add_argument("--save", type=Path, help="folder for the recalibrated models")
    args = p.parse_args(argv)

    name = Path(args.model).stem
    print(f"{name}: held-out validation (dB) after BatchNorm recalibration over {args.batches} batches of "
          f"{args.batch}")
    print(heldout.header("patch", args.val_levels))
    for patch in (int(v) for v in args.patches.split(",")):
        v = heldout.validate_model(args.model, args, patch=patch, recalibrate=bool(patch), name=f"{name}-bn{patch}",
                                   save_dir=str(args.save) if args.save else None)
        print(heldout.row(str(patch or "as saved"), v, args.val_levels), flush=True)


if __name__ == "__main__":
    main()
