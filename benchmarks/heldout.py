"""The held-out validation the benchmarks share: a saved model, BatchNorm optionally recalibrated.

``add_arguments`` adds the data and sampling options; ``validate_model`` builds the Trainer that
``memnet train`` would (the run's held-out images whole at ``--val-levels``, eval mode, fp32),
recalibrates the model's BatchNorm statistics over ``--batches`` batches of ``--batch`` training
patches of ``patch`` px when asked (``Trainer.recalibrate``: the trainer's sampler with its fixed
recalibration seed, the degradation of training; weights untouched) and validates it.
"""

from __future__ import annotations

import argparse


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def add_arguments(p: argparse.ArgumentParser, *, batch: int) -> None:
    """The data and recalibration options; ``--levels`` and ``--val-levels`` parse to tuples of floats."""
    p.add_argument("--batches", type=int, default=20, help="recalibration batches")
    p.add_argument("--batch", type=int, default=batch, help="patches per recalibration batch")
    p.add_argument("--clean-dir", default=".data/train400-train")
    p.add_argument("--val-dir", default=".data/train400-val")
    p.add_argument("--levels", type=_floats, default="0,75", help="training noise sigma range (recalibration)")
    p.add_argument("--val-levels", type=_floats, default="15,25,50")
    p.add_argument("--threads", type=int, default=2)


def validate_model(model_path: str, args: argparse.Namespace, *, patch: int, recalibrate: bool,
                   name: str, save_dir: str | None = None):
    """The held-out ``Validation`` of the model; with ``save_dir``, the recalibrated model is saved there."""
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    cfg = TrainConfig(task="denoise", levels=args.levels, name=name, init=model_path,
                      clean_dir=args.clean_dir, val_dir=args.val_dir, val_crop=0, val_levels=args.val_levels,
                      patch_size=max(patch, 31), batch_size=args.batch, recalibrate_batches=args.batches,
                      steps=1, threads=args.threads, device="cpu", precision="fp32", model_dir=save_dir)
    trainer = Trainer(cfg)
    if recalibrate:
        trainer.recalibrate()
    v = trainer.validate()
    if recalibrate and save_dir:
        trainer.save_final_model(0.0)
    return v


def header(first: str, val_levels) -> str:
    return (f"| {first} | val PSNR | sigma " + " / ".join(f"{v:g}" for v in val_levels) + " |\n|---|---|---|")


def row(label: str, v, val_levels) -> str:
    levels_text = " / ".join(f"{v.per_level[str(lv)]['psnr']:.3f}" for lv in val_levels)
    return f"| {label} | {v.psnr:.4f} | {levels_text} |"
