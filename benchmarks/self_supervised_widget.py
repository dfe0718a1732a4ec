"""Walkthrough for docs/self-supervised.md: the Train widget fine-tunes on one noisy camera image alone.

napari opens a uint16 camera recording of the procedural "cells" image (``sample_data.make_cells``,
``core.camera.poisson_gaussian``: a peak of 20 photons, read noise 2, offset 100); the Train widget's
"noisy layers only (self-supervised)" source fine-tunes the bundled CPU default denoiser on it, holding
out the last 20% of the image (never trained on) for the self-supervised validation and the preview;
"Restore with it" then restores the layer. PSNR against the clean cells (in photons: ``(counts - 100) /
peak``) is measured on the held-out region only, for the bundled model applied directly and the
fine-tuned one. Screenshots of the real window go to ``--shots``. Run under X (or Xvfb)::

    xvfb-run -a .venv/bin/python benchmarks/self_supervised_widget.py --shots docs/images --out docs/results/self_supervised_widget.json
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
PEAK, READ, OFFSET = 20.0, 2.0, 100.0


def settle(app, seconds=0.3):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--shots", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    os.environ["NAPARI_MEMNET_MODELS_DIR"] = tempfile.mkdtemp(prefix="memnet-ss-example-")

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_memnet import restore
    from napari_memnet._widgets import train_data as td
    from napari_memnet.core.atomic import atomic_write_text
    from napari_memnet.core.camera import poisson_gaussian
    from napari_memnet.core.metrics import psnr
    from napari_memnet.sample_data import make_cells
    from napari_memnet.training.events import Step

    torch.set_num_threads(1)
    clean = make_cells().astype(np.float64)
    counts = poisson_gaussian(clean, PEAK, READ, OFFSET, rng=0)
    viewer = napari.Viewer(show=True)
    win = viewer.window._qt_window
    win.resize(1500, 1250)
    layer = viewer.add_image(counts, name="cells (uint16 counts)")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-memnet", "Train (MemNet)")
    app = QApplication.instance()
    widget.source.value = td.SOURCE_NOISY_LAYERS
    widget.clean_layers.value = [layer]
    widget.steps.value = args.steps
    widget.model_name.value = "cells-self-supervised"
    widget.show_advanced.value = True
    widget.patch_size.value, widget.batch_size.value = args.patch, args.batch
    widget.validate_every.value = max(1, args.steps // 10)
    settle(app, 1.0)
    viewer.reset_view()
    settle(app, 0.3)
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
        win.grab().save(str(args.shots / "self_supervised_setup.png"))
    worker = widget.start()
    if worker is None:
        print("refused:", widget.data_message.value, file=sys.stderr)
        return 1

    def mid_run(event):
        if args.shots and isinstance(event, Step) and event.step == args.steps // 2:
            settle(app, 0.1)
            win.grab().save(str(args.shots / "self_supervised_running.png"))

    worker.yielded.connect(mid_run)
    cpu0, t0 = time.process_time(), time.perf_counter()
    widget.wait(timeout=None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    outcome = widget.last_outcome
    if outcome is None or outcome.error:
        print("failed:", outcome and outcome.error, file=sys.stderr)
        return 1
    finished = outcome.finished
    viewer.layers.selection.active = layer
    widget.restore_with_model()
    restore_widget = widget._restore_widget()
    while restore_widget.worker is not None:
        settle(app, 0.1)
    settle(app, 0.5)
    if args.shots:
        win.grab().save(str(args.shots / "self_supervised_done.png"))
    # the held-out region: the last 20% of the longer axis (the widget's split), never trained on
    _tr, _va, (oy, ox), _axis = td.split_region(counts, 0.2)

    def region_psnr(out):
        out = (np.asarray(out, np.float64)[oy:, ox:] - OFFSET) / PEAK
        return round(float(psnr(out.astype(np.float32), clean[oy:, ox:].astype(np.float32))), 2)

    summary = {
        "image": "sample_data.make_cells() (256 x 256) recorded as uint16 counts: peak 20 photons, read noise 2, "
                 "offset 100 (core.camera.poisson_gaussian, rng=0)",
        "base_model": finished_base(finished),
        "fine_tune": {"steps": finished.step, "patch": args.patch, "batch": args.batch, "lr": "auto (1e-4)",
                      "wall_s": round(wall, 1), "process_cpu_s": round(cpu, 1), "torch_threads": 1,
                      "self_supervised_validation_db_before": round(finished.base_model_psnr, 3),
                      "self_supervised_validation_db_after": round(finished.psnr, 3)},
        "held_out_region_psnr": {"noisy": region_psnr(counts),
                                 "bundled_directly": region_psnr(restore(counts, "denoise")),
                                 "fine_tuned": region_psnr(restore_widget.last_result_layer.data)},
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0


def finished_base(finished) -> str | None:
    from napari_memnet import load_model

    return load_model(finished.model_name).card.get("base_model")


if __name__ == "__main__":
    raise SystemExit(main())
