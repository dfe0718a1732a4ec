"""Data of a sprint (``sprint.py``): the network to start from, the images, batches, validation.

* ``start_network``: a bundled/user model by name or path, or a fresh ``red30`` / ``fast`` net.
* ``load_data``: ``training.data.prepare_data`` on the task's training images; ``val_count``
  whole images are held out (seeded, ``data.split_validation``), or the images of ``val_dir``
  (e.g. the fixed split of ``benchmarks/denoise_split.sh`` that the CPU runs validate on; training
  images of the same file names are left out of training), degraded once at the paper's test
  levels inside the training range (``data.synthetic_val_items``): the same items before and
  after, never a test set.
* ``BatchStream``: endless (input, target) batches on the device, from ``training.sampler.PatchSampler``
  either in worker processes (``workers``: CPU cores degrade, pinned memory, copies that do not
  wait for the GPU) or in this process on the device (``inline``).
* ``validate``: PSNR per level in eval mode, fp32 (TF32 off), as ``Trainer.validate`` measures it.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

import _common
from _common import BUNDLED, IMAGE_SUFFIXES, sample_crops, training_files

FAST_ARCH = {"blocks": 4, "recursions": 4, "channels": 48, "unshuffle": 2}
TINY = {"memnet": {"blocks": 2, "recursions": 2, "channels": 8}, "red30": {"layers": 2, "channels": 8}}


def start_network(spec: str | None, task: str, smoke: bool):
    """(network in train mode, description, card or None) to continue training from."""
    from napari_memnet.models import MemNetConfig, build_model
    load_model = _common.api("load_model")
    from napari_memnet.training.config import DEFAULT_ARCH

    if smoke and spec in (None, "red30", "fast"):
        arch = "red30" if spec == "red30" else "memnet"
        return build_model(arch, TINY[arch]).train(), f"fresh tiny {arch} {TINY[arch]} (smoke)", None
    if spec == "red30":
        return build_model("red30", DEFAULT_ARCH["red30"]).train(), f"fresh RED30 {DEFAULT_ARCH['red30']}", None
    if spec == "fast":
        if "unshuffle" not in getattr(MemNetConfig, "__dataclass_fields__", {}):
            raise ValueError("--model fast needs MemNetConfig(unshuffle=...), which this checkout does not have")
        return build_model("memnet", FAST_ARCH).train(), f"fresh fast MemNet {FAST_ARCH}", None
    loaded = load_model(spec or BUNDLED[task])
    if loaded.task not in (None, task):
        raise ValueError(f"model {loaded.name!r} was trained for {loaded.task!r}, not {task!r}")
    return loaded.network.train(), loaded.name, loaded.card


def card_levels(card: dict | None, task: str):
    """The training levels of a model card (sigma range, scales, JPEG range), else the task's defaults."""
    from napari_memnet.training.config import DEFAULT_LEVELS

    levels = (card or {}).get("levels") or {}
    for key in ("sigma_range", "scales", "jpeg_quality_range"):
        if levels.get(key):
            return tuple(levels[key])
    return DEFAULT_LEVELS[task]


def load_data(task, levels, root, *, patch, val_count, val_crop, seed, smoke, val_dir=None):
    """``TrainingData`` with fixed held-out validation items, and a description of the source."""
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.data import prepare_data
    from napari_memnet.training.sampler import crop_size

    if smoke:
        clean, source = sample_crops(6, 96), "6 crops of the bundled sample (smoke)"
    else:
        clean = [str(p) for p in training_files(task, root)]
        if not clean:
            raise ValueError(f"no training images for {task!r} under {root} (run benchmarks/gpu/prepare_data.sh "
                             "or pass --data)")
        source = f"{len(clean)} images from {root}"
    validation = None
    if val_dir is not None and smoke:
        raise ValueError("--val-dir names held-out training images; a smoke run trains on crops of the bundled sample")
    if val_dir is not None:
        validation = sorted(str(p) for p in Path(val_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not validation:
            raise ValueError(f"no validation images in {val_dir}")
        held_out = {Path(v).name for v in validation}
        clean = [c for c in clean if Path(c).name not in held_out]
        source += f", without the {len(held_out)} validation images of {val_dir}"
    cfg = TrainConfig(task=task, levels=levels, patch_size=patch, val_count=val_count, val_crop=val_crop,
                      seed=seed)
    data = prepare_data(cfg, clean=clean, validation=validation, min_size=crop_size(task, patch, cfg.levels, False))
    return data, cfg.levels, source


class _Batches(torch.utils.data.IterableDataset):
    """Endless CPU batches from a ``PatchSampler`` seeded per worker."""

    def __init__(self, items, task, levels, patch, batch, seed):
        super().__init__()
        self.items, self.task, self.levels = items, task, levels
        self.patch, self.batch, self.seed = patch, batch, seed

    def __iter__(self):
        from napari_memnet.training.sampler import PatchSampler

        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        sampler = PatchSampler(self.items, self.task, self.levels, self.patch, self.seed + 7919 * (worker + 1), "cpu")
        while True:
            inp, tgt, _ = sampler.batch(self.batch)
            yield inp, tgt


class BatchStream:
    """``next(stream)`` -> (input, target) on ``device``, the input in channels_last when asked."""

    def __init__(self, mode, items, task, levels, patch, batch, seed, device, workers, channels_last):
        self.mode, self.device, self.channels_last = mode, torch.device(device), channels_last
        self.wait_s = 0.0  # time spent waiting for batches
        self._iter = None
        if mode == "inline":
            from napari_memnet.training.sampler import PatchSampler

            sampler = PatchSampler(items, task, levels, patch, seed, self.device)
            self._next = lambda: sampler.batch(batch)[:2]
            return
        methods = multiprocessing.get_all_start_methods()
        context = "fork" if "fork" in methods else None  # workers never touch CUDA; fork shares the images
        loader = torch.utils.data.DataLoader(
            _Batches(items, task, levels, patch, batch, seed), batch_size=None, num_workers=workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=4, multiprocessing_context=context)
        self._iter = iter(loader)
        self._next = lambda: next(self._iter)

    def __iter__(self):
        return self

    def __next__(self):
        t0 = time.perf_counter()
        inp, tgt = self._next()
        self.wait_s += time.perf_counter() - t0
        inp = inp.to(self.device, non_blocking=True)
        tgt = tgt.to(self.device, non_blocking=True)
        if self.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        return inp, tgt

    def close(self) -> None:
        if self._iter is not None:
            shutdown = getattr(self._iter, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self._iter = None


@torch.no_grad()
def validate(net, items, task, device) -> dict:
    """Mean PSNR (and of the degraded inputs) over ``items``, per level too; eval mode, fp32."""
    psnr = _common.api("psnr")
    t0 = time.perf_counter()
    was_training = net.training
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    net.eval()
    torch.backends.cudnn.allow_tf32 = False  # plain fp32, comparable with the CPU
    torch.backends.cudnn.benchmark = False  # validation shapes vary: no autotuning per shape
    per_level: dict = {}
    try:
        for it in items:
            x = torch.from_numpy(np.ascontiguousarray(it.input, np.float32))[None, None].to(device)
            y = net(x)[0, 0].float().cpu().numpy()
            if task != "denoise":
                y = np.clip(y, 0.0, 1.0)
            entry = per_level.setdefault(str(it.level), {"psnr": [], "input_psnr": []})
            entry["psnr"].append(float(psnr(y, it.target, shave=it.shave)))
            entry["input_psnr"].append(float(psnr(it.input, it.target, shave=it.shave)))
    finally:
        net.train(was_training)
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = flags
    levels = {k: {"psnr": float(np.mean(v["psnr"])), "input_psnr": float(np.mean(v["input_psnr"])),
                  "items": len(v["psnr"])} for k, v in per_level.items()}
    every = [p for v in per_level.values() for p in v["psnr"]]
    inputs = [p for v in per_level.values() for p in v["input_psnr"]]
    return {"psnr": float(np.mean(every)) if every else math.nan,
            "input_psnr": float(np.mean(inputs)) if inputs else math.nan,
            "per_level": levels, "items": len(every), "seconds": time.perf_counter() - t0}
