"""Which test images hold pixels of a training set: crops of the same photograph.

    python benchmarks/train_test_overlap.py --coarse 4 --ncc 0.85 --train ../shared/data/train/Train400 \
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
conversions differ by a level or two). Images are read as ``memnet eval``
reads them for ``--task`` (``evaluate.load_plane``: MATLAB ``rgb2gray`` for
denoise, the Y of ``rgb2ycbcr`` for sr and deblock).

``--coarse 4`` searches on the images averaged over 4 x 4 blocks, with probes
of 64 x 64 px averaged the same way (16 x 16 values), then places each match to
the pixel where the probe's own pixels agree best: about 1/100 of the work,
and a probe of 64 px is textured where one of 16 px is flat. Averaging on
another phase lowers a true match's correlation (0.87-1.0 measured on Set12
crops at every phase), hence ``--ncc 0.85`` there; a false match fails the
pixel check. On Train400 against Set12, BSD68 and BSD200 it finds what the
full-resolution search found, boxes and all, and BSD200's flat 43051 as well,
which that search missed (all 200 pixel-identical).

The SR and JPEG training set ("291": T91 + BSD200) holds whole photographs, so
a test image could be cut from one of them with none of the training image's
probes inside it: ``--both-ways`` also searches the test images' probes in the
training images. Only copies at the same scale are found (a test image made by
resizing a training photograph is not):

    python benchmarks/train_test_overlap.py --task sr --both-ways \
        --train ../shared/data/train/T91 ../shared/data/train/BSD200 \
        --test ../shared/data/test/Set5 ../shared/data/test/Set14 ../shared/data/test/BSD100 \
        ../shared/data/test/Urban100_Y ../shared/data/test/Classic5 ../shared/data/test/LIVE1 \
        --json docs/results/train_test_overlap_291.json

The record lists, per test set, the images with training pixels, the training
image, the box it covers and the fraction of the test image it covers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PROBE = 16
MIN_STD = 4.0


def _planes(folder: Path, task: str = "denoise") -> dict[str, np.ndarray]:
    """The images of ``folder`` as ``memnet eval`` reads them for ``task`` (gray for denoise, Y for sr
    and deblock)."""
    from napari_memnet.evaluate import list_images, load_plane

    return {p.stem: load_plane(p, task).astype(np.float32) for p in list_images(folder)}


def _pool(plane: np.ndarray, factor: int) -> np.ndarray:
    """``plane`` averaged over ``factor`` x ``factor`` blocks (the rows and columns past a multiple dropped)."""
    if factor == 1:
        return plane
    h, w = plane.shape[0] // factor * factor, plane.shape[1] // factor * factor
    blocks = plane[:h, :w].reshape(h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def _probe_origins(shape: tuple[int, int], count: int, side: int) -> list[tuple[int, int]]:
    """Top-left corners of the probes: the centre, then the centres of the four quarters."""
    h, w = shape
    centres = [(h // 2, w // 2), (h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4)]
    return [(max(0, cy - side // 2), max(0, cx - side // 2)) for cy, cx in centres[:count]]


def probes(sources: dict[str, np.ndarray], count: int, coarse: int = 1):
    """(kernels (n, 1, P, P) zero-mean unit-norm, [(source name, y, x)]) of the textured probes: each
    a region of P * ``coarse`` px of a source image, averaged down by ``coarse``."""
    import torch

    side = PROBE * coarse
    kernels, where = [], []
    for name, plane in sources.items():
        for y, x in _probe_origins(plane.shape, count, side):
            region = plane[y:y + side, x:x + side]
            if region.shape != (side, side):
                continue
            patch = _pool(region, coarse).astype(np.float64)
            if patch.std() < MIN_STD:
                continue
            patch = patch - patch.mean()
            kernels.append(patch / np.linalg.norm(patch))
            where.append((name, y, x))
    if not kernels:
        return torch.zeros(0, 1, PROBE, PROBE), where
    return torch.tensor(np.stack(kernels), dtype=torch.float32)[:, None], where


def _best_windows(plane: np.ndarray, kernels, chunk: int = 256):
    """(best NCC, flat index of its window, windows per row) of each probe over every window of
    ``plane``, probes in chunks so that the correlation volume stays small for large images."""
    import torch
    import torch.nn.functional as F

    img = torch.from_numpy(np.ascontiguousarray(plane))[None, None]
    ones = torch.ones(1, 1, PROBE, PROBE)
    n = PROBE * PROBE
    s = F.conv2d(img, ones)
    s2 = F.conv2d(img * img, ones)
    norm = (s2 - s * s / n).clamp_min(0).sqrt()
    valid = norm > MIN_STD * np.sqrt(n)
    values, indices = [np.zeros(0, np.float32)], [np.zeros(0, np.int64)]
    for k0 in range(0, kernels.shape[0], chunk):
        ncc = F.conv2d(img, kernels[k0:k0 + chunk]) / norm.clamp_min(1e-6)
        best = torch.where(valid, ncc, torch.zeros_like(ncc))[0].flatten(1).max(1)
        values.append(best.values.numpy())
        indices.append(best.indices.numpy())
    return np.concatenate(values), np.concatenate(indices), int(norm.shape[-1])


GAINS = (0.75, 1.34)  # --affine: the gains two gray conversions differ by (Y = 16 + 0.859 x rgb2gray, and back)


def _mean_abs_diff(target: np.ndarray, source: np.ndarray, affine: bool):
    """Mean absolute difference of ``source`` and each array of the last two axes of ``target``;
    with ``affine``, after mapping ``source`` by the least-squares gain and offset onto each (one
    photograph converted to gray two ways), infinite where that gain is outside ``GAINS`` (a flat
    target fits anything at a gain near 0: Set14's sky in monarch matched a cloud of Train400's
    test_133 at 2.96 levels)."""
    if not affine:
        return np.abs(target - source).mean(axis=(-2, -1))
    ds = source - source.mean()
    var = float((ds * ds).mean())
    mean = target.mean(axis=(-2, -1), keepdims=True)
    gain = ((target - mean) * ds).mean(axis=(-2, -1), keepdims=True) / var if var > 0 else np.ones_like(mean)
    diff = np.abs(target - (gain * ds + mean)).mean(axis=(-2, -1))
    return np.where((gain[..., 0, 0] >= GAINS[0]) & (gain[..., 0, 0] <= GAINS[1]), diff, np.inf)


def _refine(region: np.ndarray, plane: np.ndarray, y: int, x: int, radius: int, affine: bool = False):
    """The top-left within ``radius`` px of (y, x) where ``region`` agrees best with ``plane``
    (least mean absolute difference): a coarse search's position to the pixel."""
    from numpy.lib.stride_tricks import sliding_window_view

    side = region.shape[0]
    y0, x0 = max(0, y - radius), max(0, x - radius)
    y1, x1 = min(plane.shape[0] - side, y + radius), min(plane.shape[1] - side, x + radius)
    if y1 < y0 or x1 < x0:
        return None
    windows = sliding_window_view(plane[y0:y1 + side, x0:x1 + side], (side, side))
    iy, ix = np.unravel_index(int(np.argmin(_mean_abs_diff(windows, region, affine))), windows.shape[:2])
    return y0 + int(iy), x0 + int(ix)


def placements(sources: dict[str, np.ndarray], targets: dict[str, np.ndarray], *, count: int = 5,
               ncc_min: float = 0.99, max_diff: float = 3.0, coarse: int = 1, affine: bool = False):
    """Each place where a probe of a source image puts that image in a target image and the
    overlapping pixels agree: (source, target, (oy, ox) the source's top-left in the target,
    box (y0, x0, y1, x1) of the overlap in the target, mean absolute difference).

    With ``coarse`` > 1 the probes are searched in the targets averaged down by that factor (about
    ``coarse`` ** 4 times less work: fewer windows, each of fewer pixels) and each match is placed
    to the pixel within 2 * (``coarse`` - 1) px of where the coarse search put it, where the probe's
    pixels agree best (in a smooth region the coarse peak can be a coarse pixel off: within
    ``coarse`` - 1 px placed BSD200's 196027 a row off, at a mean difference of 2 gray levels)."""
    if not sources or not targets:
        return
    kernels, where = probes(sources, count, coarse)
    side = PROBE * coarse
    for tname, plane in targets.items():
        if min(plane.shape) < side:
            continue
        values, indices, width = _best_windows(_pool(plane, coarse), kernels)
        tried = set()
        for k in np.flatnonzero(values >= ncc_min):
            name, py, px = where[k]
            cy, cx = divmod(int(indices[k]), width)
            crop = sources[name]
            placed = _refine(crop[py:py + side, px:px + side], plane, cy * coarse, cx * coarse, 2 * coarse - 2,
                             affine)
            if placed is None:
                continue
            oy, ox = placed[0] - py, placed[1] - px
            if (name, oy, ox) in tried:
                continue
            tried.add((name, oy, ox))
            y0, x0 = max(0, oy), max(0, ox)
            y1, x1 = min(plane.shape[0], oy + crop.shape[0]), min(plane.shape[1], ox + crop.shape[1])
            diff = float(_mean_abs_diff(plane[y0:y1, x0:x1], crop[y0 - oy:y1 - oy, x0 - ox:x1 - ox], affine))
            if diff < max_diff:
                yield name, tname, (oy, ox), (y0, x0, y1, x1), diff


def _keep_largest(found: dict, test_name: str, train_name: str, box, test_size: int, diff: float) -> None:
    fraction = (box[2] - box[0]) * (box[3] - box[1]) / test_size
    if fraction > found.get(test_name, {}).get("fraction", 0.0):
        found[test_name] = {"train": train_name, "box": [int(v) for v in box], "fraction": round(fraction, 4),
                            "mean_abs_diff": round(diff, 3)}


def find_overlaps(train: dict[str, np.ndarray], test: dict[str, np.ndarray], *, count: int = 5,
                  ncc_min: float = 0.99, max_diff: float = 3.0, both_ways: bool = False,
                  coarse: int = 1, affine: bool = False) -> dict[str, dict]:
    """{test name: {train, box (y0, x0, y1, x1) in the test image, fraction, mean_abs_diff}}, one
    training image per test image (the largest overlap).

    The training images' probes are searched in the test images: that finds a training crop cut
    from a test photograph. ``both_ways`` also searches the test images' probes in the training
    images: that finds a test image cut from a (larger) training photograph, where no probe of the
    training image need fall inside the test image. ``affine``: the pixel check allows a gain and
    an offset (training and test images converted to gray differently)."""
    found: dict[str, dict] = {}
    search = dict(count=count, ncc_min=ncc_min, max_diff=max_diff, coarse=coarse, affine=affine)
    for name, tname, _, box, diff in placements(train, test, **search):
        _keep_largest(found, tname, name, box, test[tname].size, diff)
    if both_ways:
        for tname, name, (oy, ox), box, diff in placements(test, train, **search):
            in_test = (box[0] - oy, box[1] - ox, box[2] - oy, box[3] - ox)
            _keep_largest(found, tname, name, in_test, test[tname].size, diff)
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, nargs="+", required=True,
                   help="the training image folders (e.g. Train400; T91 BSD200 for the 291 images)")
    p.add_argument("--test", type=Path, nargs="+", required=True, help="test set folders")
    p.add_argument("--task", default="denoise", choices=("denoise", "sr", "deblock"),
                   help="read the images as memnet eval does for this task (gray or Y)")
    p.add_argument("--both-ways", action="store_true",
                   help="also search the test images' probes in the training images (whole-photograph training sets)")
    p.add_argument("--affine", action="store_true",
                   help="the pixel check allows a gain and offset (gray training images against Y test images)")
    p.add_argument("--probes", type=int, default=5, choices=range(1, 6), help="probes per image (1-5)")
    p.add_argument("--ncc", type=float, default=0.99, help="least NCC of a probe match (about 0.85 with --coarse 4)")
    p.add_argument("--coarse", type=int, default=1,
                   help="search on images averaged down by this factor, then place each match to the pixel")
    p.add_argument("--max-diff", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    train = {}
    for folder in args.train:
        prefix = f"{folder.name}/" if len(args.train) > 1 else ""
        train.update({prefix + name: plane for name, plane in _planes(folder, args.task).items()})
    record = {"command": "python benchmarks/train_test_overlap.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "train": " + ".join(folder.name for folder in args.train), "train_images": len(train),
              "task": args.task, "both_ways": args.both_ways, "affine": args.affine, "sets": {}}
    for folder in args.test:
        test = _planes(folder, args.task)
        start = time.perf_counter()
        found = find_overlaps(train, test, count=args.probes, ncc_min=args.ncc, max_diff=args.max_diff,
                              both_ways=args.both_ways, coarse=args.coarse, affine=args.affine)
        seconds = round(time.perf_counter() - start, 1)
        mean_fraction = sum(f["fraction"] for f in found.values()) / len(test)
        record["sets"][folder.name] = {"images": len(test), "with_training_pixels": len(found),
                                       "mean_fraction": round(mean_fraction, 4), "seconds": seconds, "found": found}
        print(f"{folder.name}: {len(found)} of {len(test)} images hold pixels of {record['train']} "
              f"({100 * mean_fraction:.1f} % of their pixels on average; {seconds} s)", flush=True)
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
