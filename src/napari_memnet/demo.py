"""``python -m napari_memnet.demo`` (what ``make demo`` runs).

With a display (``DISPLAY``/``WAYLAND_DISPLAY`` set, or macOS/Windows) it opens
napari with the noisy sample (sigma 25, plus its clean reference) and the
"Restore (MemNet)" widget docked. Without one (or with ``--headless``) it
restores that sample with the bundled default denoiser and writes
``noisy.png``, ``restored.png``, ``clean.png`` and ``psnr.txt`` to
``demo-output/``, printing the paths and the PSNR before/after. If the bundled
denoiser weights are missing it says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def display_available() -> bool:
    """True when a GUI can be shown: X11/Wayland display set, or macOS/Windows."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _to_png_bytes(image: np.ndarray) -> bytes:
    """A 0..1 float image as 8-bit PNG bytes (clipped and rounded)."""
    import io

    from PIL import Image

    pixels = np.clip(np.round(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def bundled_default_denoiser():
    """The default denoiser's ``ModelInfo`` on this machine (``models.defaults``), or ``None`` if its
    weights are missing."""
    from .models.files import default_model_name, list_models

    name = default_model_name("denoise")
    for info in list_models("denoise"):
        if info.source == "bundled" and info.name == name:
            return info
    return None


def run_headless(output_dir: Path, model: str | None = None) -> int:
    """Restore the noisy sample (bundled denoiser unless ``model`` names another); write PNGs."""
    from .core.atomic import atomic_write_bytes, atomic_write_text
    from .core.metrics import psnr
    from .models.files import BUNDLED_DIR, ModelFileError, load_model
    from .models.files import default_model_name
    from .sample_data import NOISE_SIGMA, noisy_sample

    if model is None:
        info = bundled_default_denoiser()
        if info is None:
            name = default_model_name("denoise")
            print(f"error: the bundled default denoiser {name!r} is missing "
                  f"(no {name}.safetensors/.json in {BUNDLED_DIR}).\n"
                  "Copy the released weights there, or run the demo with a denoising model of "
                  "your own: python -m napari_memnet.demo --headless --model NAME "
                  "(`memnet models` lists them).", file=sys.stderr)
            return 1
        model = info.name
    try:
        model_name = load_model(model, task="denoise").name
    except (ModelFileError, ValueError) as exc:
        print(f"error: cannot load denoising model {model!r}: {exc}", file=sys.stderr)
        return 1

    from .api import restore

    (clean, _, _), (noisy, _, _) = noisy_sample()
    restored = restore(noisy, "denoise", model=model)
    before = psnr(noisy, clean)
    after = psnr(restored, clean)

    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"noisy": output_dir / "noisy.png", "restored": output_dir / "restored.png",
             "clean": output_dir / "clean.png"}
    atomic_write_bytes(paths["noisy"], _to_png_bytes(noisy))
    atomic_write_bytes(paths["restored"], _to_png_bytes(restored))
    atomic_write_bytes(paths["clean"], _to_png_bytes(clean))
    line = (f"astronaut 256x256, gaussian noise sigma {NOISE_SIGMA}, model {model_name}: "
            f"PSNR noisy {before:.2f} dB -> restored {after:.2f} dB\n")
    atomic_write_text(output_dir / "psnr.txt", line)
    for key, path in paths.items():
        print(f"{key:>8}: {path}")
    print(f"    psnr: {output_dir / 'psnr.txt'}")
    print(line, end="")
    return 0


def run_gui() -> int:
    """Open napari with the noisy sample and the Restore widget docked."""
    import napari

    viewer = napari.Viewer(title="napari-memnet demo")
    viewer.open_sample("napari-memnet", "noisy")
    viewer.window.add_plugin_dock_widget("napari-memnet", "Restore (MemNet)")
    napari.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_memnet.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--headless", action="store_true",
                        help="never open a window; write results to --output")
    parser.add_argument("--output", type=Path, default=Path("demo-output"),
                        help="folder for the headless results (default: demo-output)")
    parser.add_argument("--model", default=None,
                        help="denoising model name or file for the headless run "
                             "(default: the bundled memnet-denoise)")
    args = parser.parse_args(argv)
    if not args.headless and display_available():
        return run_gui()
    return run_headless(args.output, model=args.model)


if __name__ == "__main__":
    sys.exit(main())
