"""Deblurring side-by-side (issue #19): a small MHNet against a fast MemNet at equal CPU training
time on the ``deblur`` task, and Richardson-Lucy told the true PSF as a reference.

    bash benchmarks/denoise_split.sh      # the fixed Train400 split (392 train / 8 held out), gray images
    nice -n 10 python benchmarks/deblur_study.py train mhnet-c16 memnet-fast --minutes 30 --threads 1 \\
        --out runs/deblur-study --eval ../shared/data/test
    python benchmarks/deblur_study.py rl --data ../shared/data/test --out runs/deblur-study
    python benchmarks/deblur_study.py table runs/deblur-study
    python benchmarks/deblur_study.py smoke --out /tmp/deblur-smoke     # a few seconds of everything

``train``: every candidate trains ``deblur`` (PSF width ~ U[0.5, 3.5] px, Gaussian / disk / motion,
sensor noise 0-2 %: ``training.sampler``) with the engine's own ``Trainer.train_step`` for the same
budget of *process CPU time* (fair when other work shares the cores), a cosine learning rate over
that budget, and is validated every ``--val-every`` CPU-seconds on the held-out images (whole
images, Gaussian PSF sigma 1 / 2 / 3 px + 1 % noise: the evaluation protocol's degradation);
validation time is not charged. The model is saved in ``OUT/models``; with ``--eval DATA`` it is
then evaluated by ``memnet eval``'s protocol (``evaluate.evaluate``) on Set12 and BSD68 at widths 2
and 3. ``rl``: Richardson-Lucy deconvolution with the true PSF (the Gaussian the protocol blurred
with), on the same protocol images, at several iteration counts: choosing the best count on the
test images themselves is an oracle, in RL's favour. Results: ``OUT/NAME.json``.
Benchmarks only: numpy is enough here (scipy is not needed either).
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_study import train_for_cpu_budget  # noqa: E402  the same CPU-budget loop as the denoising study

TRAIN_DIR, VAL_DIR = ROOT / ".data" / "train400-train", ROOT / ".data" / "train400-val"  # denoise_split.sh
EVAL_SETS, EVAL_WIDTHS = ("Set12", "BSD68"), (2, 3)
RL_ITERATIONS = (10, 25, 50)

BASE = {"task": "deblur", "levels": (0.5, 3.5), "val_levels": (1, 2, 3), "val_crop": 0, "batch_size": 8,
        "patch_size": 64, "optimizer": "adam", "lr_min": 1e-6, "loss": "l1", "clip": 1.0,
        "recalibrate_batches": 0, "multi_supervised": True, "seed": 0}
CANDIDATES = {
    # the small MHNet (the Train widget's and `--arch mhnet`'s default shape)
    "mhnet-c16": {"architecture": "mhnet", "arch": {"channels": 16, "depth": 3, "blocks": 1}, "lr": 1e-3},
    # the fast MemNet of the shipped denoiser (M2R3 C64, space-to-depth 2) at its recipe's learning rate
    "memnet-fast": {"architecture": "memnet", "arch": {"blocks": 2, "recursions": 3, "channels": 64, "unshuffle": 2},
                    "lr": 2e-3},
    # the same network started from the shipped fast denoiser's weights (what the SR and JPEG models did)
    "memnet-fast-init": {"architecture": "memnet", "init": "memnet-fast-denoise", "lr": 2e-3},
}


def _write(out: Path, name: str, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out / f"{name}.json")


def evaluate_protocol(data: Path, restore_fn_for_level, max_images=None) -> dict:
    """{dataset: {width: (PSNR, input PSNR)}} of the deblur protocol at EVAL_WIDTHS."""
    from napari_memnet.evaluate import evaluate

    out = {}
    for width in EVAL_WIDTHS:
        records = evaluate("deblur", data, datasets=EVAL_SETS, levels=(width,), max_images=max_images,
                           restore_fn=restore_fn_for_level(width))
        for r in records:
            out.setdefault(r["dataset"], {})[str(width)] = (round(r["psnr"], 3), round(r["baseline_psnr"], 3))
    return out


def train_candidate(name: str, minutes: float, val_every: float, out: Path, train_dir: Path, val_dir: Path,
                    eval_data: Path | None, max_images=None) -> dict:
    import torch

    from napari_memnet.evaluate import _model_restore_fn
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    spec = CANDIDATES[name]
    settings = {**BASE, **spec, "name": name, "steps": 10**9, "schedule": "constant"}
    cfg = TrainConfig(**settings)
    trainer = Trainer(cfg, clean=str(train_dir), validation=str(val_dir))
    curve, used, wall = train_for_cpu_budget(trainer, name, minutes, val_every)
    info = trainer.save_final_model(wall, directory=out / "models", name=name)
    result = {"name": name, "spec": {k: v for k, v in settings.items() if k not in ("steps", "name")},
              "threads": torch.get_num_threads(), "cpu_seconds": round(used, 1),
              "wall_seconds": round(wall, 1), "steps": trainer.step,
              "parameters": trainer.parameters_count(), "input_psnr": trainer.history.get("baseline_psnr"),
              "final_psnr": curve[-1]["psnr"], "final_per_level": curve[-1]["per_level"], "curve": curve,
              "model": str(info.path), "command": " ".join(sys.argv)}
    if eval_data is not None:
        run, _ = _model_restore_fn(str(info.path), "deblur", "cpu")
        result["protocol"] = evaluate_protocol(eval_data, lambda _width: run, max_images)
    _write(out, name, result)
    return result


def richardson_lucy(observed: np.ndarray, psf: np.ndarray, iterations) -> dict:
    """Richardson-Lucy deconvolution (symmetric borders; the PSF is point-symmetric, so it is its own
    adjoint), from the observation with its negative values clipped to a small positive floor:
    {n: the estimate after n iterations} for every n of ``iterations`` (one run to the largest).
    The same convolution as ``core.blur.blur``, with the PSF's spectrum computed once."""
    data = np.maximum(np.asarray(observed, np.float64), 1e-6)
    r = psf.shape[0] // 2
    h, w = data.shape
    size = (h + 4 * r, w + 4 * r)
    spectrum = np.fft.rfft2(psf, s=size)

    def conv(img):
        padded = np.pad(img, r, mode="symmetric")
        return np.fft.irfft2(np.fft.rfft2(padded, s=size) * spectrum, s=size)[2 * r: 2 * r + h, 2 * r: 2 * r + w]

    estimate, out = data.copy(), {}
    for k in range(1, max(iterations) + 1):
        estimate *= conv(data / np.maximum(conv(estimate), 1e-12))
        if k in iterations:
            out[k] = estimate.copy()
    return out


def run_rl(data: Path, out: Path, iterations=RL_ITERATIONS, max_images=None, datasets=EVAL_SETS) -> dict:
    """Richardson-Lucy with the true PSF at each of ``iterations``: each image is deconvolved once, to
    the largest count, and its intermediate estimates serve the smaller counts. Results are merged
    into ``OUT/richardson-lucy.json`` after every (dataset, width), with the images counted."""
    import hashlib

    from napari_memnet.core.blur import make_psf
    from napari_memnet.evaluate import evaluate

    path = out / "richardson-lucy.json"
    result = json.loads(path.read_text()) if path.exists() else {"name": "richardson-lucy", "by_iterations": {}}
    result.setdefault("commands", []).append(" ".join(sys.argv))
    for dataset in datasets:
        for width in EVAL_WIDTHS:
            psf = make_psf("gaussian", width)
            cache: dict = {}  # this set's images at this width: {image hash: {n: estimate}}

            def restore_fn(n):
                def run(img):
                    key = hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()
                    if key not in cache:
                        cache[key] = richardson_lucy(img, psf, tuple(iterations))
                    return cache[key][n]
                return run

            for n in iterations:
                rec = evaluate("deblur", data, datasets=dataset, levels=(width,), max_images=max_images,
                               restore_fn=restore_fn(n))[0]
                result["by_iterations"].setdefault(str(n), {}).setdefault(dataset, {})[str(width)] = (
                    round(rec["psnr"], 3), round(rec["baseline_psnr"], 3))
                result.setdefault("images", {})[dataset] = rec["images"]
            print(f"RL {dataset} width {width} ({rec['images']} images): " + ", ".join(
                f"{n} it. {result['by_iterations'][str(n)][dataset][str(width)][0]:.2f} dB" for n in iterations),
                flush=True)
            _write(out, "richardson-lucy", result)
    return result


def table(out: Path) -> str:
    lines = ["| method | CPU min | steps | held-out val PSNR | " + " | ".join(
        f"{d} w{w}" for d in EVAL_SETS for w in EVAL_WIDTHS) + " |", "|---" * (4 + len(EVAL_SETS) * len(EVAL_WIDTHS)) + "|"]
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    cell = lambda prot, d, w: f"{prot[d][str(w)][0]:.2f}" if prot and d in prot else "-"  # noqa: E731
    inputs = None
    for r in rows:
        if r["name"] == "richardson-lucy":
            inputs = inputs or next(iter(r["by_iterations"].values()))  # the same blurred inputs
            for n, prot in r["by_iterations"].items():
                lines.append(f"| Richardson-Lucy, true PSF, {n} it. | - | - | - | "
                             + " | ".join(cell(prot, d, w) for d in EVAL_SETS for w in EVAL_WIDTHS) + " |")
            continue
        prot = r.get("protocol")
        inputs = inputs or prot
        lines.append(f"| {r['name']} | {r['cpu_seconds'] / 60:.1f} | {r['steps']} | {r['final_psnr']:.3f} | "
                     + " | ".join(cell(prot, d, w) for d in EVAL_SETS for w in EVAL_WIDTHS) + " |")
    if inputs:
        lines.append("| blurred input | - | - | - | " + " | ".join(
            f"{inputs[d][str(w)][1]:.2f}" if d in inputs else "-" for d in EVAL_SETS for w in EVAL_WIDTHS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("train", "rl", "table", "smoke"))
    p.add_argument("names", nargs="*", help=f"train: candidates, of {sorted(CANDIDATES)}; table: the OUT folder")
    p.add_argument("--minutes", type=float, default=30.0, help="CPU minutes of training per candidate")
    p.add_argument("--val-every", type=float, default=120.0, help="CPU seconds between validations")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "deblur-study")
    p.add_argument("--train-dir", type=Path, default=TRAIN_DIR)
    p.add_argument("--val-dir", type=Path, default=VAL_DIR)
    p.add_argument("--eval", type=Path, metavar="DATA", help="train: then evaluate on DATA/Set12 and DATA/BSD68")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "test", help="rl: the test sets")
    p.add_argument("--datasets", default=",".join(EVAL_SETS), help="rl: which of the test sets")
    p.add_argument("--max-images", type=int, help="rl: the first N images (by name) of each set")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.what == "table":
        print(table(Path(args.names[0]) if args.names else args.out))
        return 0
    if args.what == "rl":
        run_rl(args.data, args.out, max_images=args.max_images, datasets=tuple(args.datasets.split(",")))
        return 0
    if args.what == "smoke":  # seconds: every path once, on tiny budgets and one image per set
        shared = ROOT.parent / "shared" / "data"
        for name in CANDIDATES:
            train_candidate(name, 0.05, 2.0, args.out, shared / "train" / "Train400", shared / "test" / "Set5",
                            shared / "test", max_images=1)
        run_rl(shared / "test", args.out, iterations=(2,), max_images=1)
        print(table(args.out))
        return 0
    unknown = [n for n in args.names if n not in CANDIDATES] or ([] if args.names else ["(none given)"])
    if unknown:
        p.error(f"unknown candidates {unknown}; expected some of {sorted(CANDIDATES)}")
    if not args.train_dir.is_dir() or not args.val_dir.is_dir():
        p.error("run `bash benchmarks/denoise_split.sh` first (makes .data/train400-train and .data/train400-val)")
    for name in args.names:
        train_candidate(name, args.minutes, args.val_every, args.out, args.train_dir, args.val_dir, args.eval)
    print(table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
