"""Recalibrate the BatchNorm statistics of a bundled model on its training data.

    PYTHONPATH=src python benchmarks/recalibrate_bundled.py denoise [--batches 20] [--batch 32]

Runs the trained network forward (no gradient, weights unchanged) over
``--batches`` batches of 31x31 training patches degraded as in training, sets
every BatchNorm's running mean/variance to the exact average over them
(``napari_memnet.training.bn_calibration``), and saves the model again in
place with its card (the card records the recalibration).

The trainer now does this itself at the end of every run
(``TrainConfig.recalibrate_batches``, default 20 batches of the run's own
training batch size; see "BatchNorm recalibration" in docs/training.md), so
new models need no separate step. This script is kept as the exact record of
how the shipped weights were made (their cards' ``batchnorm_recalibration``
names this command); its batches are drawn here (rotations only, batch 32),
not by the trainer's patch sampler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from napari_memnet.core.degrade import add_noise, bicubic_degrade, jpeg_compress, rgb_to_gray, rgb_to_y
from napari_memnet.models.files import BUNDLED_DIR, load_model, save_model
from napari_memnet.training.bn_calibration import recalibrate_batchnorm

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
SETS = {"denoise": ["Train400"], "sr": ["T91", "BSD200"], "deblock": ["T91", "BSD200"]}


def load_plane(path: Path, task: str) -> np.ndarray:
    img = np.asarray(Image.open(path).convert("RGB" if task != "denoise" else "L"))
    if img.ndim == 3:
        img = rgb_to_y(img) if task != "denoise" else rgb_to_gray(img)
    return np.asarray(img, np.float32) / 255.0


def batches(task: str, images: list, n_batches: int, batch: int, rng, patch: int = 31):
    for _ in range(n_batches):
        xs = []
        for _ in range(batch):
            im = images[rng.integers(len(images))]
            size = patch if task != "sr" else 36  # a multiple of 2, 3 and 4 for the SR crop
            y, x = rng.integers(0, im.shape[0] - size + 1), rng.integers(0, im.shape[1] - size + 1)
            clean = np.ascontiguousarray(np.rot90(im[y:y + size, x:x + size], rng.integers(4)))
            if task == "denoise":
                deg = add_noise(clean, rng.uniform(0, 75), rng=rng)
            elif task == "sr":
                deg = bicubic_degrade(clean, int(rng.choice([2, 3, 4])))[:patch, :patch]
            else:
                deg = jpeg_compress(clean, int(rng.integers(5, 51)))
            xs.append(np.asarray(deg, np.float32))
        yield torch.from_numpy(np.stack(xs)[:, None])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task", choices=sorted(SETS))
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    name = f"memnet-{args.task}"
    model = load_model(BUNDLED_DIR / f"{name}.safetensors")
    files = sorted(f for s in SETS[args.task] for f in (args.data / s).iterdir() if f.suffix.lower() in (".png", ".jpg"))
    images = [load_plane(f, args.task) for f in files]
    n = recalibrate_batchnorm(model.network, batches(args.task, images, args.batches, args.batch,
                                                     np.random.default_rng(args.seed)))
    card = {k: v for k, v in model.card.items()
            if k not in ("format_version", "name", "architecture", "config", "task", "input",
                         "receptive_radius", "weights_sha256")}
    card["batchnorm_recalibration"] = {
        "batches": n, "batch": args.batch, "patch": 31, "data": SETS[args.task],
        "command": f"PYTHONPATH=src python benchmarks/recalibrate_bundled.py {args.task} --batches {args.batches} "
                   f"--batch {args.batch} --seed {args.seed}"}
    save_model(model.network, name, task=args.task, directory=BUNDLED_DIR, **card)
    print(f"{name}: BatchNorm statistics recalibrated over {n} batches of {args.batch}; saved in {BUNDLED_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
