"""Fine-tuning on noisy camera images alone: self-supervised objectives against the bundled denoiser.

Clean ground truth: real photographs (Train400 for training, Set12 for evaluation: never trained on what
is evaluated). Both are recorded by the camera model of ``napari_memnet.core.camera.poisson_gaussian``:
uint16 counts, offset 100, a peak of 10-30 photons and read noise 1-3 counts drawn per image (seeded).
Every model restores the uint16 counts with ``napari_memnet.restore`` (restore's intensity rule: the
0.1/99.9th percentiles), and PSNR is measured on ``(restored - offset) / peak`` against the clean
image (0..1, ``core.metrics.psnr``).

Rows: the noisy input; the bundled CPU default denoiser applied directly; the same behind the generalized
Anscombe transform with the noise curve estimated from each image (``core.camera``); fine-tunes of it
with ``fine_tune(noisy=...)`` (each ``--methods`` objective; ``--vst-methods``: on the transformed
recordings, restored behind the transform), and the supervised fine-tune with the clean
images (``fine_tune(pairs=...)``: each recording and its clean counts on the map restore chooses for the
recording, ``intensity="as-is"``), the same steps, batch, patch and learning rate, BatchNorm frozen too.
One torch thread; process CPU time is reported beside wall time (the machine is shared).

    python benchmarks/self_supervised.py --steps 300 --json docs/results/self_supervised.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("NAPARI_MEMNET_DATA", ROOT.parent / "shared" / "data"))
OFFSET = 100.0


def record(paths, seed: int, peak, read) -> list[dict]:
    """Each clean image (0..1) and its camera recording, with the peak and read noise drawn for it."""
    from napari_memnet.core.camera import poisson_gaussian
    from napari_memnet.core.images import read_image

    rng = np.random.default_rng(seed)
    out = []
    for path in paths:
        clean = np.asarray(read_image(path), dtype=np.float64) / 255.0
        if clean.ndim == 3:
            clean = clean[..., :3].mean(axis=-1)
        p, r = float(rng.uniform(*peak)), float(rng.uniform(*read))
        out.append({"name": path.name, "clean": clean, "peak": p, "read": r,
                    "counts": poisson_gaussian(clean, p, r, OFFSET, rng=rng)})
    return out


def score(images, restored) -> dict:
    from napari_memnet.core.metrics import psnr

    values = [float(psnr(((np.asarray(z, np.float64) - OFFSET) / im["peak"]).astype(np.float32),
                         im["clean"].astype(np.float32))) for im, z in zip(images, restored)]
    return {"psnr": round(float(np.mean(values)), 3), "per_image": [round(v, 3) for v in values]}


def vst_restore(counts, model=None):
    """``restore(..., camera=True)`` on the counts as floats: the result is not rounded back to uint16
    (``restore(camera=True)`` on the uint16 counts is its own row)."""
    import napari_memnet

    return napari_memnet.restore(np.asarray(counts, np.float64), "denoise", model=model, camera=True)


def batchnorm_check(images, train, base: str) -> dict:
    """The base network on each recording (restore's map, whole image) in eval mode and with its BatchNorm
    in train mode (batch statistics, as a training step sees it), and after re-estimating its statistics
    on 20 batches of 8 noisy 64-px patches of the TRAINING recordings (what the trainer's end-of-run
    recalibration would do)."""
    import torch

    from napari_memnet.core.intensity import choose_intensity
    from napari_memnet.models.files import load_model
    from napari_memnet.training.bn_calibration import recalibrate_batchnorm
    from napari_memnet.training.data import TrainItem
    from napari_memnet.training.sampler import PatchSampler

    def run(net, train_mode):
        net.train(train_mode)
        out = []
        with torch.no_grad():
            for im in images:
                imap = choose_intensity(im["counts"])
                x = torch.from_numpy(imap.forward(im["counts"]))[None, None]
                out.append(imap.inverse(net(x)[0, 0].numpy(), np.float32))
        return score(images, out)["psnr"]

    net = load_model(base).network
    rows = {"eval mode (running statistics)": run(net, False), "BatchNorm in train mode": run(net, True)}
    items = [TrainItem(im["name"], p, p) for im in train
             for p in [choose_intensity(im["counts"]).forward(im["counts"])]]
    sampler = PatchSampler(items, "denoise", (0, 75), 64, 0, "cpu")
    recalibrate_batchnorm(net, (sampler.batch(8)[0] for _ in range(20)))
    rows["eval mode after recalibration on noisy patches"] = run(net, False)
    return rows


def fine_tune(name, source, args, out, **kw) -> dict:
    import napari_memnet

    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = napari_memnet.fine_tune(task="denoise", steps=args.steps, batch_size=args.batch, patch_size=args.patch,
                                    lr=args.lr, name=name, validation=args.val_count, threads=1,
                                    validate_every=max(1, args.steps // 4), out_dir=out / "runs" / name,
                                    model_dir=out / "models", seed=args.seed, **source, **kw)
    return {"model": str(model.path), "cpu_s": round(time.process_time() - cpu0, 1),
            "wall_s": round(time.perf_counter() - wall0, 1), "base_model": model.card.get("base_model"),
            "validation_before": model.card["training"]["validation_psnr_before"],
            "validation_after": model.card["training"]["validation_psnr_after"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-images", type=int, default=24, help="Train400 images recorded for training")
    p.add_argument("--methods", nargs="*", default=["neighbor2neighbor", "blindspot"])
    p.add_argument("--vst-methods", nargs="*", default=[],
                   help="also fine-tune on the Anscombe-transformed recordings (noise curve estimated per image) "
                        "and restore behind the transform")
    p.add_argument("--supervised", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--val-count", type=int, default=2)
    p.add_argument("--peak", type=float, nargs=2, default=(10.0, 30.0))
    p.add_argument("--read", type=float, nargs=2, default=(1.0, 3.0))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batchnorm-check", action="store_true",
                   help="also: the base network with its BatchNorm in train mode, and recalibrated (batchnorm_check)")
    p.add_argument("--json", type=Path, help="write the results here (atomically)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    import napari_memnet
    from napari_memnet.core.atomic import atomic_write_text
    from napari_memnet.core.intensity import choose_intensity
    from napari_memnet.models.files import default_model_name

    train = record(sorted((DATA / "train" / "Train400").glob("*.png"))[: args.train_images], args.seed,
                   args.peak, args.read)
    test = record(sorted((DATA / "test" / "Set12").glob("*.png")), args.seed + 1, args.peak, args.read)
    noisy = [im["counts"] for im in train]
    base = default_model_name("denoise", "cpu")
    rows = {"noisy input": score(test, [im["counts"] for im in test])}

    def evaluate(label, model=None, extra=None):
        cpu0 = time.process_time()
        rows[label] = {**score(test, [napari_memnet.restore(im["counts"], "denoise", model=model) for im in test]),
                       **(extra or {}), "eval_cpu_s": round(time.process_time() - cpu0, 1)}
        print(f"{label}: {rows[label]['psnr']:.3f} dB", flush=True)

    evaluate(f"{base} applied directly")
    rows[f"{base} behind the Anscombe transform (noise curve estimated per image)"] = score(
        test, [vst_restore(im["counts"]) for im in test])
    rows[f"restore(uint16 counts, camera=True) with {base}"] = score(
        test, [napari_memnet.restore(im["counts"], "denoise", camera=True) for im in test])
    if args.batchnorm_check:
        rows["batchnorm check"] = batchnorm_check(test, train, base)
        print(rows["batchnorm check"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for method in args.methods:
            info = fine_tune(f"ss-{method}", {"noisy": noisy}, args, out, self_supervised=method)
            evaluate(f"fine_tune(noisy=...) {method}", info["model"], info)
        if args.vst_methods:
            from napari_memnet.core.camera import stabilise

            stabilised = [stabilise(z)[0] for z in noisy]
        for method in args.vst_methods:
            info = fine_tune(f"ss-vst-{method}", {"noisy": stabilised}, args, out, self_supervised=method)
            cpu0 = time.process_time()
            label = f"fine_tune(noisy=Anscombe-transformed) {method}, restored behind the transform"
            rows[label] = {**score(test, [vst_restore(im["counts"], info["model"]) for im in test]), **info,
                           "eval_cpu_s": round(time.process_time() - cpu0, 1)}
            print(f"{label}: {rows[label]['psnr']:.3f} dB", flush=True)
        if args.supervised:  # each recording and its clean counts, both by the map restore chooses for it
            pairs = []
            for im in train:
                imap = choose_intensity(im["counts"])
                pairs.append((imap.forward(im["counts"]), imap.forward(OFFSET + im["peak"] * im["clean"])))
            info = fine_tune("supervised", {"pairs": pairs}, args, out, base_model=base, freeze_batchnorm=True,
                             intensity="as-is")
            evaluate("fine_tune(pairs=[(noisy, clean)]) supervised", info["model"], info)
    result = {"command": "python benchmarks/self_supervised.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "base_model": base, "settings": {k: (list(v) if isinstance(v, tuple) else v)
                                               for k, v in vars(args).items() if k != "json"},
              "train": [im["name"] for im in train], "test": [im["name"] for im in test],
              "test_noise": [{"name": im["name"], "peak": round(im["peak"], 2), "read": round(im["read"], 2)}
                             for im in test],
              "offset": OFFSET, "torch_threads": 1, "rows": rows}
    text = json.dumps(result, indent=2)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
