"""More denoising training images beside Train400: BSD200 (BSDS500 `train`) and T91, as symlink folders.

    python benchmarks/denoise_extra_data.py          # writes .data/bsd200-train-nocheck/ and .data/t91-min128/

* ``.data/bsd200-train-nocheck/``: the 200 BSDS500 `train` photographs except every 10th in name order (the
  20 that ``bm3d_compare.py --image-dir ../shared/data/train/BSD200 --every 10`` restores: the check set of
  docs/training.md, which no denoiser trains on), so 180.
* ``.data/t91-min128/``: the T91 images whose sides are both at least ``--min-side`` (128, the patch of the
  frozen-BatchNorm runs; the trainer refuses smaller images), 84 of 91.

Against Set12 and BSD68 only Set12/04 (left out of the unseen summary already) holds pixels of T91 + BSD200
(docs/results/train_test_overlap_291_denoise.json). Colour images become gray in the trainer (MATLAB rgb2gray),
as ``bm3d_compare.py`` reads them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def link_folder(out: Path, files: list[Path]) -> int:
    """Replace ``out`` by a folder of symlinks to ``files``; returns their count."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in files:
        os.symlink(f.resolve(), out / f.name)
    return len(files)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("NAPARI_MEMNET_DATA", ROOT.parent / "shared" / "data")))
    p.add_argument("--out", type=Path, default=ROOT / ".data")
    p.add_argument("--check-every", type=int, default=10, help="leave out every K-th BSD200 photograph (the check set)")
    p.add_argument("--min-side", type=int, default=128)
    args = p.parse_args(argv)
    from PIL import Image

    from napari_memnet.evaluate import list_images

    bsd = list_images(args.data / "train" / "BSD200")
    check = set(bsd[:: args.check_every])
    n_bsd = link_folder(args.out / "bsd200-train-nocheck", [f for f in bsd if f not in check])
    def min_side(path: Path) -> int:
        with Image.open(path) as img:  # reads the header only
            return min(img.size)

    t91 = [f for f in list_images(args.data / "train" / "T91") if min_side(f) >= args.min_side]
    n_t91 = link_folder(args.out / "t91-min128", t91)
    print(f"bsd200-train-nocheck: {n_bsd} images ({len(check)} check photographs left out), "
          f"t91-min128: {n_t91} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
