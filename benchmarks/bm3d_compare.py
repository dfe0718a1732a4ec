"""A denoiser against BM3D told the true sigma, on images no model was trained or tuned on.

    python benchmarks/bm3d_compare.py --model memnet-fast-denoise --sigmas 25,50 --json docs/results/bm3d_fast.json

Images: Set12 (photographs, ../shared/data/test/Set12), the bundled
public-domain astronaut crop and the procedural fluorescence-like cells image
(``sample_data.make_cells``), all gray on 0..1. Each image gets additive
Gaussian noise of the given sigma (of 255) from a generator seeded by
(seed, image name, sigma), without clipping (the paper's protocol); the model
restores it with ``restore_plane`` (no intensity mapping, as ``memnet eval``);
BM3D (the ``bm3d`` package, not a dependency of napari-memnet:
``pip install bm3d``) gets the same noisy image and the true sigma.

Set12/04 (the starfish) is a crop of the Berkeley photograph whose other crop
is Train400's test_020.png: 29 % of its pixels were trained on
(``benchmarks/train_test_overlap.py``, docs/results/train_test_overlap.json).
It is restored and listed with ``seen_in_training`` but left out of the
summary, which is over the images no model was trained on; ``summary_with_seen``
is over all of them.

BM3D's result depends only on the noisy image and sigma, not on the model, so ``--bm3d-from
RECORD.json`` takes it from an earlier record (the ship script passes the one it replaces) for
every row whose noisy input is the same (the same image, sigma and seed: its input PSNR equal to
1e-9 dB, and the record's seed and bm3d version where it names them) and runs BM3D for the others.
Reused rows say ``bm3d_from``.

``--image-dir DIR`` (repeatable) restores the images of DIR instead (named ``DIR's name/stem``; ``--every K``
takes every K-th in name order), e.g. the model's own training and held-out images, to see whether its
margin over BM3D differs on images it was trained on:

    python benchmarks/bm3d_compare.py --sigmas 25,50 --image-dir .data/train400-train --every 16 \
        --json docs/results/bm3d_compare_train400-train.json

``summary_by_folder`` gives the means of each folder (Set12, astronaut, cells, or each DIR).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


# the images with pixels of the denoisers' training set (Train400), found by benchmarks/train_test_overlap.py
SEEN_IN_TRAINING = {"Set12/04": "29 % of its pixels are Train400's test_020.png (the same photograph)"}


def images(data: Path, dirs: list[Path] = (), every: int = 1) -> dict[str, np.ndarray]:
    from napari_memnet.evaluate import list_images, load_plane
    from napari_memnet.sample_data import astronaut_uint8, make_cells

    def gray01(path):  # 8-bit files (load_plane refuses others), gray as `memnet eval` reads them
        return load_plane(path, "denoise").astype(np.float32) / 255.0

    if dirs:
        return {f"{d.name}/{p.stem}": gray01(p) for d in dirs for p in list_images(d)[::every]}
    out = {f"Set12/{p.stem}": gray01(p) for p in list_images(data / "test" / "Set12")}
    out["astronaut"] = astronaut_uint8().astype(np.float32) / 255.0
    out["cells"] = np.asarray(make_cells(), np.float32)
    return out


def noisy(clean: np.ndarray, name: str, sigma: float, seed: int) -> np.ndarray:
    digest = hashlib.sha256(f"{seed}:{name}:{sigma}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return (clean + rng.normal(0.0, sigma / 255.0, clean.shape)).astype(np.float32)


def image_arguments(p: argparse.ArgumentParser) -> None:
    """The model, noise and image options this script shares with phase_ensemble.py."""
    p.add_argument("--model", default=None, help="model name or path (default: the task's default)")
    p.add_argument("--sigmas", default="25,50")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="restore the (8-bit) images of DIR instead of Set12, astronaut and cells; repeatable")
    p.add_argument("--every", type=int, default=1, metavar="K", help="with --image-dir: every K-th image of each folder, by name")
    p.add_argument("--json", type=Path)


def parse_image_arguments(p: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.every < 1:
        p.error(f"--every must be 1 or more, got {args.every}")
    for d in args.image_dir:
        if not d.is_dir():
            p.error(f"--image-dir {d}: not a folder")
    return args


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    image_arguments(p)
    p.add_argument("--no-bm3d", action="store_true", help="only the model (when bm3d is not installed)")
    p.add_argument("--ensemble", type=int, default=1, help="the model's self-ensemble (1..8; default 1: off)")
    p.add_argument("--bm3d-from", type=Path, metavar="RECORD",
                   help="reuse BM3D's PSNR from this earlier record where the noisy input is the same")
    p.add_argument("--zoom", type=int, default=1, metavar="Z",
                   help="a probe: bicubic-upsample every clean image Z times first (texture Z times coarser; "
                        "the images are named NAME@xZ, which also seeds their noise)")
    p.add_argument("--wiener-pilot", action="store_true",
                   help="a probe: also run BM3D's second (Wiener) stage alone with the model's result as its pilot "
                        "estimate (block matching on the model's result, collaborative Wiener filtering of the "
                        "noisy image) and record its PSNR as wiener_pilot_psnr")
    args = parse_image_arguments(p, argv)
    if args.zoom < 1:
        p.error(f"--zoom must be 1 or more, got {args.zoom}")
    from napari_memnet.restoration.engine import Engine
    from napari_memnet.restoration.eager import restore_plane
    from napari_memnet.core.metrics import psnr

    bm3d = None
    if not args.no_bm3d:
        import bm3d
    if args.wiener_pilot:
        try:
            import bm3d as bm3d_package
        except ImportError:
            p.error("--wiener-pilot runs BM3D's Wiener stage: it needs the bm3d package (pip install bm3d)")
    version = _bm3d_version() if bm3d is not None else None
    earlier = earlier_bm3d(args.bm3d_from, args.seed, version) if args.bm3d_from and bm3d is not None else {}
    engine = Engine(args.model, device="cpu", precision="fp32", task="denoise", ensemble=args.ensemble)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    rows = []
    for name, clean in zoomed(images(args.data, args.image_dir, args.every), args.zoom).items():
        for sigma in sigmas:
            x = noisy(clean, name, sigma, args.seed)
            t0 = time.perf_counter()
            y = restore_plane(engine, x)
            row = {"image": name, "sigma": sigma, "seen_in_training": name.split("@")[0] in SEEN_IN_TRAINING, "input_psnr": psnr(x, clean), "model_psnr": psnr(y, clean),
                   "model_seconds": round(time.perf_counter() - t0, 2)}
            if args.wiener_pilot:
                w = bm3d_package.bm3d(x.astype(np.float64), sigma / 255.0, stage_arg=y.astype(np.float64))
                row["wiener_pilot_psnr"] = psnr(np.asarray(w, np.float32), clean)
            old = earlier.get((name, sigma))
            if old is not None and abs(old["input_psnr"] - row["input_psnr"]) < 1e-9:
                row.update(bm3d_psnr=old["bm3d_psnr"], bm3d_seconds=old.get("bm3d_seconds"),
                           bm3d_from=str(args.bm3d_from))
            elif bm3d is not None:
                t0 = time.perf_counter()
                b = bm3d.bm3d(x.astype(np.float64), sigma / 255.0)
                row.update(bm3d_psnr=psnr(np.asarray(b, np.float32), clean),
                           bm3d_seconds=round(time.perf_counter() - t0, 2))
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = _summary([r for r in rows if not r["seen_in_training"]], sigmas)
    with_seen = _summary(rows, sigmas)
    folder = lambda r: r["image"].split("/")[0]  # noqa: E731 - "astronaut" and "cells" are their own
    by_folder = {f: _summary([r for r in rows if folder(r) == f], sigmas) for f in dict.fromkeys(map(folder, rows))}
    groups = {f"folder {f}": v for f, v in by_folder.items()} if args.image_dir else {
        "unseen images": summary, "all images": with_seen}
    for sigma in sigmas:
        for label, summ in groups.items():
            print(f"sigma {sigma:g}, {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in summ[str(sigma)].items() if k != "images"))
    if args.json:
        from napari_memnet.core.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"model": engine.model.name, "ensemble": engine.ensemble, "command": " ".join(sys.argv),
                                       "seed": args.seed, "bm3d_version": version, "summary": summary,
                                       "summary_with_seen": with_seen, "summary_by_folder": by_folder,
                                       "seen_in_training": SEEN_IN_TRAINING,
                                       "rows": rows}, indent=1))
    return 0


def zoomed(found: dict[str, np.ndarray], zoom: int) -> dict[str, np.ndarray]:
    """The images bicubic-upsampled ``zoom`` times (PyTorch, no antialiasing needed upwards), named
    ``NAME@xZOOM``, and unchanged for zoom 1."""
    if zoom == 1:
        return found
    import torch

    def up(a):
        t = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None], scale_factor=zoom, mode="bicubic",
                                            align_corners=False)
        return t[0, 0].numpy()
    return {f"{name}@x{zoom}": up(a) for name, a in found.items()}


def _bm3d_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bm3d")
    except PackageNotFoundError:
        return None


def earlier_bm3d(path: Path, seed: int, version: str | None) -> dict:
    """{(image, sigma): row} of an earlier record's BM3D rows, or {} (with the reason printed) where the
    record is missing or names another seed or bm3d version."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        print(f"not reusing BM3D from {path}: {exc}", file=sys.stderr)
        return {}
    for key, mine in (("seed", seed), ("bm3d_version", version)):
        if record.get(key) is not None and mine is not None and record[key] != mine:
            print(f"not reusing BM3D from {path}: its {key} is {record[key]!r}, here {mine!r}", file=sys.stderr)
            return {}
    return {(r["image"], float(r["sigma"])): r for r in record.get("rows", []) if "bm3d_psnr" in r}


def _summary(rows: list[dict], sigmas: list[float]) -> dict:
    out = {}
    for sigma in sigmas:
        sel = [r for r in rows if r["sigma"] == sigma]
        out[str(sigma)] = {k: float(np.mean([r[k] for r in sel])) for k in ("input_psnr", "model_psnr", "bm3d_psnr", "wiener_pilot_psnr")
                           if k in sel[0]}
        out[str(sigma)]["images"] = len(sel)
    return out


if __name__ == "__main__":
    sys.exit(main())
