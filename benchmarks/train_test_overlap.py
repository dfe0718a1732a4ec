"""Which test images hold pixels of a training set: crops of the same photograph.

    python benchmarks/train_test_overlap.py --train ../shared/data/train/Train400 \
        --test ../shared/data/test/Set12 ../shared/data/test/BSD68 ../shared/data/test/BSD200 \
        --json docs/results/train_test_overlap.json

Train400 (the DnCNN training set) is 400 crops of 180 x 180 px of Berkeley
photographs, so a test image cut from one of those photographs shares pixels
with the training set without being the same file. For each training image a
few textured 16 x 16 px probes (its centre, then the centres of its four
quarters) are searched in every test image by normalized cross-correlation
(``torch.nn.functional.conv2d``; windows with a standard deviation under 4
gray levels do not count: flat areas correlate with anything). A probe that
correlates at ``--ncc`` or more places the whole training crop in the test
image; the match counts when the overlapping pixels agree (mean absolute
difference under ``--max-diff`` gray levels: JPEG decoders and gray
conversions differ by a level or two). Test images are read as ``memnet eval``
reads them for denoising (``evaluate.load_plane``: MATLAB ``rgb2gray``).

The record lists, per test set, the images with training pixels, the training
image, the box it covers and the fraction of the test image it covers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PROBE = 16
MIN_STD = 4.0


def _planes(folder: Path) -> dict[str, np.ndarray]:
    from napari_memnet.evaluate import list_images, load_plane

    return {p.stem: load_plane(p, "denoise").astype(np.float32) for p in list_images(folder)}


def _probe_origins(shape: tuple[int, int], count: int) -> list[tuple[int, int]]:
    """Top-left corners of the probes: the centre, then the centres of the four quarters."""
    h, w = shape
    centres = [(h // 2, w // 2), (h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4)]
    return [(max(0, cy - PROBE // 2), max(0, cx - PROBE // 2)) for cy, cx in centres[:count]]


def probes(train: dict[str, np.ndarray], count: int):
    """(kernels (n, 1, P, P) zero-mean unit-norm, [(train name, y, x)]) of the textured probes."""
    import torch

    kernels, where = [], []
    for name, plane in train.items():
        for y, x in _probe_origins(plane.shape, count):
            patch = plane[y:y + PROBE, x:x + PROBE].astype(np.float64)
            if patch.shape != (PROBE, PROBE) or patch.std() < MIN_STD:
                continue
            patch = patch - patch.mean()
            kernels.append(patch / np.linalg.norm(patch))
            where.append((name, y, x))
    return torch.tensor(np.stack(kernels), dtype=torch.float32)[:, None], where


def _ncc(plane: np.ndarray, kernels):
    """(n, H-P+1, W-P+1) normalized cross-correlation of each probe with every window of ``plane``."""
    import torch
    import torch.nn.functional as F

    img = torch.from_numpy(plane)[None, None]
    ones = torch.ones(1, 1, PROBE, PROBE)
    n = PROBE * PROBE
    s = F.conv2d(img, ones)
    s2 = F.conv2d(img * img, ones)
    norm = (s2 - s * s / n).clamp_min(0).sqrt()
    valid = norm > MIN_STD * np.sqrt(n)
    ncc = F.conv2d(img, kernels) / norm.clamp_min(1e-6)
    return torch.where(valid, ncc, torch.zeros_like(ncc))[0]


def find_overlaps(train: dict[str, np.ndarray], test: dict[str, np.ndarray], *, count: int = 5,
                  ncc_min: float = 0.99, max_diff: float = 3.0) -> dict[str, dict]:
    """{test name: {train, box (y0, x0, y1, x1) in the test image, fraction, mean_abs_diff}}, one
    training image per test image (the largest overlap)."""
    kernels, where = probes(train, count)
    found = {}
    for tname, plane in test.items():
        ncc = _ncc(plane, kernels)
        best = ncc.flatten(1).max(1)
        for k in np.flatnonzero(best.values.numpy() >= ncc_min):
            name, py, px = where[k]
            wy, wx = divmod(int(best.indices[k]), ncc.shape[-1])
            crop = train[name]
            oy, ox = wy - py, wx - px  # the training crop's top-left in the test image
            y0, x0 = max(0, oy), max(0, ox)
            y1, x1 = min(plane.shape[0], oy + crop.shape[0]), min(plane.shape[1], ox + crop.shape[1])
            diff = float(np.abs(plane[y0:y1, x0:x1] - crop[y0 - oy:y1 - oy, x0 - ox:x1 - ox]).mean())
            fraction = (y1 - y0) * (x1 - x0) / plane.size
            if diff < max_diff and fraction > found.get(tname, {}).get("fraction", 0.0):
                found[tname] = {"train": name, "box": [y0, x0, y1, x1], "fraction": round(fraction, 4),
                                "mean_abs_diff": round(diff, 3)}
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, required=True, help="the training images (e.g. Train400)")
    p.add_argument("--test", type=Path, nargs="+", required=True, help="test set folders")
    p.add_argument("--probes", type=int, default=5, choices=range(1, 6), help="probes per training image (1-5)")
    p.add_argument("--ncc", type=float, default=0.99)
    p.add_argument("--max-diff", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    train = _planes(args.train)
    record = {"command": "python benchmarks/train_test_overlap.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "train": args.train.name, "train_images": len(train), "sets": {}}
    for folder in args.test:
        test = _planes(folder)
        found = find_overlaps(train, test, count=args.probes, ncc_min=args.ncc, max_diff=args.max_diff)
        mean_fraction = sum(f["fraction"] for f in found.values()) / len(test)
        record["sets"][folder.name] = {"images": len(test), "with_training_pixels": len(found),
                                       "mean_fraction": round(mean_fraction, 4), "found": found}
        print(f"{folder.name}: {len(found)} of {len(test)} images hold pixels of {args.train.name} "
              f"({100 * mean_fraction:.1f} % of their pixels on average)", flush=True)
        for tname, f in sorted(found.items()):
            print(f"  {tname}: {f['train']} covers {100 * f['fraction']:.1f} % (box {f['box']}, "
                  f"mean |diff| {f['mean_abs_diff']})", flush=True)
    if args.json:
        from napari_memnet.core.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
