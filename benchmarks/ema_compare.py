"""EMA on against off, from a run's checkpoint alone: it keeps both the trained weights and their
exponential moving average, so one validation of each on the run's held-out images compares them.

    python benchmarks/ema_compare.py runs/fast-dn-m2r3c64-l1 --clean-dir .data/train400-train \\
        --val-dir .data/train400-val

Eval mode, the checkpoint's own BatchNorm statistics for each (no recalibration), the run's
validation levels and crop (from the checkpoint's config).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--clean-dir", required=True)
    p.add_argument("--val-dir", required=True)
    args = p.parse_args(argv)
    from napari_memnet.training.checkpoint import CHECKPOINT_NAME, read_checkpoint
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    _tensors, meta = read_checkpoint(args.run / CHECKPOINT_NAME)
    settings = {**meta["config"], "model_dir": str(args.run / "ema-compare"), "name": "ema-compare"}
    cfg = TrainConfig.from_dict(settings)
    if not cfg.ema:
        raise SystemExit(f"{args.run}: the run kept no EMA (config ema = {cfg.ema})")
    trainer = Trainer(cfg, clean=args.clean_dir, validation=args.val_dir, resume=True)
    rows = {}
    for label in ("ema", "trained weights"):
        v = trainer.validate()
        rows[label] = {"psnr": round(v.psnr, 4), "per_level": {k: round(x["psnr"], 3) for k, x in v.per_level.items()}}
        trainer.ema = None  # model_network is now the trained weights
    print(json.dumps({"run": str(args.run), "step": trainer.step, "ema_decay": cfg.ema, **rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
