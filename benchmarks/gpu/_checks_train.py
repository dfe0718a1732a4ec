"""The training checks of ``device_check.py``: ``Trainer`` steps and ``fine_tune`` on the device.

* ``train_steps``: a fresh M6R6 C64 (smoke: M2R2 C8) for 30 steps of 32 patches of 48 px on the
  device through ``training.Trainer``, to the saved model: every loss finite, bf16 autocast and
  channels_last on CUDA, patches/s and the peak CUDA memory.
* ``fine_tune``: ``napari_memnet.fine_tune`` of the bundled ``memnet-denoise`` (smoke: a tiny saved
  net) for 10 steps on the device, then ``restore`` with the result there.

Training images: Train400 files when present (``.data/train`` or ``../shared/data/train``), else
crops of the bundled sample.
"""

from __future__ import annotations

import math

import _common
from _common import psnr, sample_crops, sample_plane, training_files


def training_source(ctx, count):
    """Training images: Train400 files when present, else crops of the bundled sample."""
    files = [str(p) for p in training_files("denoise", ctx.data, limit=count)]
    if files and not ctx.smoke:
        return files, f"{len(files)} Train400 images"
    return sample_crops(count, 48 if ctx.smoke else 128), "crops of the bundled sample"


def check_train_steps(ctx):
    """A few Trainer steps on the device (from scratch), to the saved model."""
    import numpy as np
    import torch

    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.events import Failed, Finished, Step, Validation
    from napari_memnet.training.trainer import Trainer

    steps = 3 if ctx.smoke else 30
    arch = {"blocks": 2, "recursions": 2, "channels": 8} if ctx.smoke else {"blocks": 6, "recursions": 6, "channels": 64}
    clean, source = training_source(ctx, 8 if ctx.smoke else 24)
    cfg = TrainConfig(task="denoise", name="device-check-train", arch=arch, steps=steps,
                      batch_size=4 if ctx.smoke else 32, patch_size=16 if ctx.smoke else 48, device=ctx.device,
                      val_count=2, val_crop=32 if ctx.smoke else 96, out_dir=str(ctx.tmp / "train"),
                      model_dir=str(ctx.tmp / "models"), checkpoint_every=steps, validate_every=steps,
                      recalibrate_batches=2)
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(cfg, clean=clean)
    losses, vals, rate, finished, failed = [], [], None, None, None
    for event in trainer.run():
        if isinstance(event, Step):
            losses.append(event.loss)
            rate = event.patches_per_s
        elif isinstance(event, Validation):
            vals.append(event.psnr)
        elif isinstance(event, Finished):
            finished = event
        elif isinstance(event, Failed):
            failed = event.error
    value = {"data": source, "device": str(trainer.device), "precision": trainer.precision,
             "channels_last": trainer.channels_last, "steps": len(losses), "first_loss": losses[0] if losses else None,
             "last_loss": losses[-1] if losses else None, "patches_per_s": rate, "val_psnr": vals,
             "peak_cuda_gib": torch.cuda.max_memory_allocated() / 2**30 if ctx.cuda else None, "error": failed}
    ok = (finished is not None and failed is None and len(losses) == steps and bool(np.isfinite(losses).all())
          and (not ctx.cuda or (trainer.precision == "bf16" and trainer.channels_last)))
    return ok, value


def check_fine_tune(ctx):
    """napari_memnet.fine_tune of the bundled denoiser on the device, then restore with the result."""
    import numpy as np

    save_model, fine_tune, restore = _common.api("save_model"), _common.api("fine_tune"), _common.api("restore")

    base = _common.BUNDLED["denoise"]
    if ctx.smoke:
        base = str(save_model(ctx._tiny, "device-check-tiny", task="denoise", directory=ctx.tmp / "base").path)
    steps = 2 if ctx.smoke else 10
    clean, source = training_source(ctx, 8 if ctx.smoke else 24)
    model = fine_tune(clean=clean, task="denoise", base_model=base, steps=steps,
                                    batch_size=4 if ctx.smoke else 16, patch_size=16 if ctx.smoke else 48,
                                    name="device-check-finetuned", device=ctx.device, validation=2,
                                    out_dir=ctx.tmp / "finetune", model_dir=ctx.tmp / "models",
                                    checkpoint_every=steps, validate_every=steps, recalibrate_batches=2,
                                    val_crop=32 if ctx.smoke else 96)
    training = model.card.get("training", {})
    clean8 = sample_plane(ctx.side)
    noisy = np.clip(clean8 + np.random.default_rng(7).normal(0, 25, clean8.shape), 0, 255).astype(np.uint8)
    out = restore(noisy, "denoise", model=model, device=ctx.device)
    value = {"base_model": model.card.get("base_model"), "data": source, "device": training.get("device"),
             "precision": training.get("precision"), "steps": training.get("steps"),
             "val_psnr_before": training.get("validation_psnr_before"),
             "val_psnr_after": training.get("validation_psnr_after"),
             "restore_psnr": psnr(out, clean8, 255), "input_psnr": psnr(noisy, clean8, 255)}
    ok = (str(training.get("device", "")).startswith(ctx.device) and training.get("steps") == steps
          and value["val_psnr_after"] is not None and math.isfinite(value["val_psnr_after"])
          and out.shape == noisy.shape)
    return ok, value
