"""Make the screenshots and before/after images of docs/usage.md in a real napari window.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/images/make_screenshots.py \
        [--denoise-model NAME] [--sr-model NAME] [--deblock-model NAME] [--deblur-model NAME] [--out docs/images]

Each task uses the bundled default model unless a model is named; a task with
no model is skipped. Everything goes through the Restore widget exactly as a
user would drive it (sample data menu entries, widget parameters, Run). The
PSNR of every before/after pair is printed and written to ``numbers.txt``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

WINDOW = (1400, 860)


def _save_png(image, path: Path, colors: int | None = 256) -> None:
    """Save a QImage/array as an optimised (palette) PNG to keep docs small."""
    from PIL import Image

    if not isinstance(image, np.ndarray):  # a QImage: go through PNG bytes
        from qtpy.QtCore import QBuffer, QIODevice

        buf = QBuffer()
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buf, "PNG")
        pil = Image.open(io.BytesIO(bytes(buf.data()))).convert("RGB")
    else:
        pil = Image.fromarray(image)
    if colors:
        pil = pil.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    pil.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def _to_uint8(img) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    if img.max() > 1.5:
        img = img / 255.0
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def _strip(images: list[np.ndarray], gap: int = 6) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    parts = []
    for i, img in enumerate(images):
        pad = np.full((h, img.shape[1]), 255, np.uint8)
        pad[: img.shape[0]] = img
        parts.append(pad)
        if i < len(images) - 1:
            parts.append(np.full((h, gap), 255, np.uint8))
    return np.hstack(parts)


def _grid(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def _model_for(task: str, named: str | None) -> str | None:
    from napari_memnet.models.files import default_model_name, list_models

    if named:
        return named
    names = {m.name for m in list_models(task) if m.source == "bundled"}
    default = default_model_name(task, "cpu")  # the rule of models/defaults.py on this machine
    return default if default in names else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--denoise-model")
    parser.add_argument("--sr-model")
    parser.add_argument("--deblock-model")
    parser.add_argument("--deblur-model")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_memnet.core.metrics import psnr

    viewer = napari.Viewer(show=True, title="napari-memnet")
    qt_window = viewer.window._qt_window
    qt_window.resize(*WINDOW)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-memnet", "Restore (MemNet)")
    from qtpy.QtCore import Qt

    qt_window.resizeDocks([dock], [430], Qt.Orientation.Horizontal)  # room for the widget's labels
    numbers: list[str] = []

    def settle():
        for _ in range(5):
            QApplication.processEvents()

    def grab(name: str):
        settle()
        _save_png(qt_window.grab().toImage(), out / name)

    def run_task(sample: str, task: str, model: str, *, scale=None, shot_prefix: str,
                 mid_run_shot: bool = False, camera: bool = False):
        viewer.layers.clear()
        _grid(viewer).enabled = False
        viewer.open_sample("napari-memnet", sample)
        degraded = viewer.layers[-1]
        reference = viewer.layers[0]
        viewer.layers.selection.active = degraded
        widget.task.value = task
        if scale:
            widget.scale.value = scale
        widget.refresh_models()
        widget.model.value = model
        widget.camera.value = camera
        viewer.reset_view()
        if mid_run_shot:
            grab(f"{shot_prefix}_before.png")
            widget.tile_size.value = 64
            taken = []

            def shoot(event):
                if not taken and event.done >= max(2, event.total // 3):
                    taken.append(event.done)
                    grab(f"{shot_prefix}_running.png")

            worker = widget.run()
            worker.yielded.connect(shoot)
            from qtpy.QtCore import QEventLoop

            loop = QEventLoop()
            worker.finished.connect(loop.quit)
            loop.exec()
            result = widget.last_result_layer
            widget.tile_size.value = 0
        else:
            result = widget.run_blocking(timeout=600)
        if result is None:
            raise SystemExit(f"{task} on {sample} failed: {widget.status.value}")
        grid = _grid(viewer)
        grid.shape = (1, len(viewer.layers))  # one row: clean reference | degraded | restored
        grid.enabled = True
        viewer.reset_view()
        grab(f"{shot_prefix}_after.png")

        clean = np.asarray(reference.data, dtype=np.float64)
        before = np.asarray(degraded.data, dtype=np.float64)
        after = np.asarray(result.data, dtype=np.float64)
        if clean.max() > 1.5:  # uint8 samples: compare on the 0..1 scale
            clean, before, after = clean / 255, before / 255, after / 255
        if task == "sr":
            from napari_memnet.core.degrade import imresize

            before = imresize(before, float(scale))  # the bicubic baseline, same size as clean
        p_before, p_after = psnr(before, clean), psnr(after, clean)
        label = "bicubic" if task == "sr" else "input"
        line = (f"{sample}: {task}{f' x{scale}' if scale else ''} with {model}{' (camera noise)' if camera else ''}: PSNR {label} "
                f"{p_before:.2f} dB -> restored {p_after:.2f} dB")
        print(line)
        numbers.append(line)
        _save_png(_strip([_to_uint8(before), _to_uint8(after), _to_uint8(clean)]),
                  out / f"{shot_prefix}_strip.png", colors=None)

    denoise = _model_for("denoise", args.denoise_model)
    if denoise:
        run_task("noisy", "denoise", denoise, shot_prefix="denoise", mid_run_shot=True)
        run_task("cells", "denoise", denoise, shot_prefix="cells", camera=True)  # photon + read noise
    else:
        print("no denoising model: skipping the denoise screenshots", file=sys.stderr)
    # (sample, task, model option, screenshot prefix, SR scale)
    for sample, task, named, prefix, scale in (("lowres", "sr", args.sr_model, "sr", 2),
                                               ("jpeg", "deblock", args.deblock_model, "deblock", None),
                                               ("blurry", "deblur", args.deblur_model, "deblur", None)):
        model = _model_for(task, named)
        if model:
            run_task(sample, task, model, scale=scale, shot_prefix=prefix)
        else:
            print(f"no {task} model: skipping the {prefix} screenshots", file=sys.stderr)

    (out / "numbers.txt").write_text("\n".join(numbers) + "\n")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
