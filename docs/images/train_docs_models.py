"""Train the three small models the screenshots in docs/usage.md were made with.

    NAPARI_MEMNET_MODELS_DIR=/tmp/docs-models .venv/bin/python docs/images/train_docs_models.py

They are deliberately tiny and short-trained (MemNet M2R2 C16, 100 steps of
batch 16 on 40x40 patches, on the CPU: a few minutes each), used only because
the bundled weights did not exist when the pictures were taken. They show the
workflow, not MemNet's quality (see docs/results.md for the bundled models).
Training data: ../shared/data/train (Train400 for denoising, T91 for SR/JPEG).
"""

from __future__ import annotations

import glob
import os
import sys
import time
from pathlib import Path

from napari_memnet import fine_tune

DATA = Path(os.environ.get("NAPARI_MEMNET_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
ARCH = {"blocks": 2, "recursions": 2, "channels": 16}
JOBS = {
    "denoise": ("Train400", (25, 25), 100),  # first 100 images
    "sr": ("T91", (2,), None),
    "deblock": ("T91", (10, 10), None),
}


def main() -> int:
    for task, (folder, levels, limit) in JOBS.items():
        files = sorted(glob.glob(str(DATA / "train" / folder / "*.png")))[:limit]
        if not files:
            print(f"no training images in {DATA / 'train' / folder}", file=sys.stderr)
            return 1
        start = time.time()
        fine_tune(files, task=task, architecture=ARCH, steps=100, patch_size=40, batch_size=16,
                  levels=levels, name=f"docs-{task}", validation=2)
        print(f"docs-{task}: {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
