"""Measured example for docs/training-widget.md: fine-tune a denoiser on an unseen domain.

1. A small natural-image denoiser (MemNet M2 R2 C16) is first trained briefly on
   Train400 with Gaussian noise (``fine_tune``; there are no bundled weights yet).
2. napari opens the "cells" sample (microscopy-like, Poisson + read noise: a
   domain the denoiser never saw) and its clean reference; the Train widget
   fine-tunes the denoiser on that layer pair, holding out the right 20% of the
   image for validation, exactly as a user would (the same widget methods the
   buttons call). Before that, a mismatched pair is tried once to show the refusal.
3. "Restore with it" applies the new model to the noisy layer.

Screenshots of the real window go to ``--shots``; the numbers are printed as JSON
(and written to ``--out``). Run under X (or Xvfb)::

    xvfb-run -a .venv/bin/python benchmarks/finetune_example.py --shots docs/images --out /tmp/finetune.json

Models go to a fresh temporary user-model folder unless ``--models-dir`` is given.
A control run then continues the base model on Train400 for the same number of
steps (no cells at all) and compares the three models on the held-out region::

    .venv/bin/python benchmarks/finetune_example.py --models-dir DIR --control --out /tmp/control.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(os.environ.get("NAPARI_MEMNET_DATA", DATA)))
    p.add_argument("--base-steps", type=int, default=400, help="steps of the natural-image base denoiser")
    p.add_argument("--steps", type=int, default=200, help="fine-tuning steps in the widget")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=31)
    p.add_argument("--lr", default="auto", help="the widget's learning rate field")
    p.add_argument("--shots", type=Path, default=None, help="folder for screenshots (train_*.png)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON summary here")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--control", action="store_true",
                   help="after a run with --models-dir: continue the base model on Train400 for the same steps "
                        "(no cells) and compare all three models on the held-out cells region")
    return p.parse_args(argv)


def train_base(args) -> dict:
    from napari_memnet import fine_tune

    t0 = time.perf_counter()
    model = fine_tune(clean=str(args.data / "train" / "Train400"), task="denoise", name="example-base-denoiser",
                      architecture={"blocks": 2, "recursions": 2, "channels": 16}, levels=(5, 50),
                      steps=args.base_steps, patch_size=args.patch, batch_size=args.batch, lr=1e-3, validation=4,
                      validate_every=args.base_steps, checkpoint_every=args.base_steps, seed=0)
    training = model.card["training"]
    return {"name": model.name, "steps": training["steps"], "minutes": round((time.perf_counter() - t0) / 60, 2),
            "train400_validation_psnr": round(training["validation_psnr_after"], 2),
            "train400_validation_input_psnr": round(training["validation_input_psnr"], 2)}


def held_out_region():
    """(noisy, clean) validation crop the widget used: the cells sample's held-out region, centre-cropped."""
    from napari_memnet._widgets.train_data import split_region
    from napari_memnet.sample_data import cells_sample

    (clean, *_), (noisy, *_) = cells_sample()
    _tr, val_noisy, offset, axis = split_region(noisy, 0.2)
    val_clean = clean[offset[0]:, offset[1]:]
    crop = 96  # TrainConfig.val_crop: centre crop of the held-out region
    h, w = val_noisy.shape
    ch, cw = min(h, crop), min(w, crop)
    y, x = (h - ch) // 2, (w - cw) // 2
    return val_noisy[y:y + ch, x:x + cw], val_clean[y:y + ch, x:x + cw]


def region_psnr(model_name: str, noisy, clean) -> float:
    import torch

    from napari_memnet import load_model
    from napari_memnet.core.metrics import psnr

    net = load_model(model_name).network.eval()
    with torch.no_grad():
        out = net(torch.from_numpy(noisy.astype("float32"))[None, None])[0, 0].numpy()
    return round(float(psnr(out, clean)), 2)


def control(args) -> int:
    """Same number of extra steps on natural images only: is the gain domain adaptation or just training?"""
    from napari_memnet import fine_tune

    t0 = time.perf_counter()
    fine_tune(clean=str(args.data / "train" / "Train400"), task="denoise", name="example-base-continued",
              base_model="example-base-denoiser", levels=(5, 50), steps=args.steps, patch_size=args.patch,
              batch_size=args.batch, lr=1e-4, validation=4, validate_every=args.steps,
              checkpoint_every=args.steps, seed=0)
    noisy, clean = held_out_region()
    from napari_memnet.core.metrics import psnr

    summary = {"held_out_region_psnr": {
        "input": round(float(psnr(noisy, clean)), 2),
        "base_model": region_psnr("example-base-denoiser", noisy, clean),
        f"base_model_plus_{args.steps}_train400_steps": region_psnr("example-base-continued", noisy, clean),
        f"fine_tuned_{args.steps}_cells_steps": region_psnr("cells-denoiser", noisy, clean)},
        "control_minutes": round((time.perf_counter() - t0) / 60, 2)}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def settle(app, seconds=0.3):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["NAPARI_MEMNET_MODELS_DIR"] = str(args.models_dir or tempfile.mkdtemp(prefix="memnet-example-"))
    if args.control:
        if args.models_dir is None:
            print("--control needs the --models-dir of an earlier run", file=sys.stderr)
            return 2
        return control(args)
    if not (args.data / "train" / "Train400").is_dir():
        print(f"Train400 not found under {args.data}", file=sys.stderr)
        return 2
    base = train_base(args)
    print("base model:", json.dumps(base), flush=True)

    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_memnet import restore
    from napari_memnet.core.metrics import psnr
    from napari_memnet.sample_data import cells_sample
    from napari_memnet.training.events import Step

    viewer = napari.Viewer(show=True)
    win = viewer.window._qt_window
    win.resize(1500, 1250)
    layers = [viewer.add_image(data, **meta) for data, meta, _kind in cells_sample()]
    clean_layer, noisy_layer = layers
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-memnet", "Train (MemNet)")
    app = QApplication.instance()
    widget.degraded.value, widget.clean.value = noisy_layer, clean_layer
    widget.base_model.value = base["name"]
    widget.steps.value = args.steps
    widget.model_name.value = "cells-denoiser"
    widget.show_advanced.value = True
    widget.patch_size.value, widget.batch_size.value = args.patch, args.batch
    widget.learning_rate.value = args.lr
    widget.validate_every.value = max(1, args.steps // 10)
    settle(app, 1.0)
    viewer.reset_view()
    settle(app, 0.3)
    shots = args.shots
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
        win.grab().save(str(shots / "train_setup.png"))

    # a mistake first: a cropped degraded layer does not match the clean one, and is refused by name
    cropped = viewer.add_image(np.asarray(noisy_layer.data)[:200], name="cells (cropped)", visible=False)
    widget.degraded.value = cropped
    refused = widget.run_blocking(timeout=120)
    assert refused is not None and refused.refused, refused
    settle(app, 0.5)
    if shots:
        win.grab().save(str(shots / "train_refused.png"))
    viewer.layers.remove(cropped)
    widget.degraded.value = noisy_layer

    worker = widget.start()
    if worker is None:
        print("refused:", widget.data_message.value, file=sys.stderr)
        return 1

    def mid_run(event):
        if shots and isinstance(event, Step) and event.step == args.steps // 2:
            settle(app, 0.1)
            win.grab().save(str(shots / "train_running.png"))

    worker.yielded.connect(mid_run)
    t0 = time.perf_counter()
    widget.wait(timeout=None)
    minutes = (time.perf_counter() - t0) / 60
    outcome = widget.last_outcome
    if outcome is None or outcome.error:
        print("failed:", outcome and outcome.error, file=sys.stderr)
        return 1
    finished = outcome.finished
    settle(app, 0.5)
    if shots:
        win.grab().save(str(shots / "train_done.png"))
        widget.native.grab().save(str(shots / "train_dock_done.png"))

    viewer.layers.selection.active = noisy_layer
    widget.restore_with_model()
    restore_widget = widget._restore_widget()
    while restore_widget.worker is not None:
        settle(app, 0.1)
    result = restore_widget.last_result_layer
    # the whole 256x256 image, for reference; the held-out region (validation) is the honest number
    clean, noisy = np.asarray(clean_layer.data), np.asarray(noisy_layer.data)
    summary = {
        "base_model": base,
        "fine_tune": {"steps": finished.step, "minutes_wall": round(minutes, 2),
                      "engine_seconds": round(finished.seconds, 1),
                      "patch": args.patch, "batch": args.batch, "lr": args.lr,
                      "validation": "last 20% of the rows of the cells image (never trained on), centre 51x96 crop",
                      "validation_psnr_input": round(finished.baseline_psnr, 2),
                      "validation_psnr_before": round(finished.base_model_psnr, 2),
                      "validation_psnr_after": round(finished.psnr, 2)},
        "whole_image_psnr": {"noisy": round(float(psnr(noisy, clean)), 2),
                             "base_model": round(float(psnr(restore(noisy, "denoise", model=base["name"]), clean)), 2),
                             "fine_tuned": round(float(psnr(np.asarray(result.data), clean)), 2)},
        "torch_threads": __import__("torch").get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if shots:
        clean_layer.visible = False
        settle(app, 0.5)
        win.grab().save(str(shots / "train_restored.png"))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
