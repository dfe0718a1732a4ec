"""`python -m napari_memnet.demo` (what `make demo` runs), headless path."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from napari_memnet import demo
from napari_memnet.core.metrics import psnr
from napari_memnet.sample_data import noisy_sample

torch = pytest.importorskip("torch")


def test_display_detection(monkeypatch):
    monkeypatch.setattr(demo.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not demo.display_available()
    monkeypatch.setenv("DISPLAY", ":99")
    assert demo.display_available()
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setattr(demo.sys, "platform", "darwin")
    assert demo.display_available()


def test_missing_bundled_denoiser_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from napari_memnet.models import files as modelfile

    monkeypatch.setattr(modelfile, "BUNDLED_DIR", tmp_path / "no-bundled-weights")  # a package without weights
    assert demo.bundled_default_denoiser() is None
    assert demo.main(["--headless", "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "memnet-denoise" in err and "missing" in err and "--model" in err
    assert not (tmp_path / "out").exists()


def test_headless_demo_writes_pngs_and_psnr(tmp_path, capsys):
    from napari_memnet import restore, save_model
    from napari_memnet.models import build_model

    torch.manual_seed(0)
    net = build_model("memnet", {"in_channels": 1, "blocks": 2, "recursions": 2, "channels": 8,
                                 "multi_supervised": True})
    save_model(net, "tiny-denoise", task="denoise")
    out = tmp_path / "demo-output"
    assert demo.main(["--headless", "--output", str(out), "--model", "tiny-denoise"]) == 0
    printed = capsys.readouterr().out
    for name in ("noisy.png", "restored.png", "clean.png", "psnr.txt"):
        assert (out / name).is_file() and str(out / name) in printed
    (clean, _, _), (noisy, _, _) = noisy_sample()
    restored = restore(noisy, "denoise", model="tiny-denoise")
    line = (out / "psnr.txt").read_text()
    before, after = map(float, re.findall(r"(\d+\.\d+) dB", line))
    assert before == pytest.approx(psnr(noisy, clean), abs=0.006)
    assert after == pytest.approx(psnr(restored, clean), abs=0.006)
    png = np.asarray(Image.open(out / "restored.png"))
    assert png.shape == clean.shape and png.dtype == np.uint8
    np.testing.assert_array_equal(png, np.clip(np.round(restored * 255.0), 0, 255).astype(np.uint8))


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    assert demo.main(["--headless", "--output", str(tmp_path), "--model", "no-such-model"]) == 1
    assert "no-such-model" in capsys.readouterr().err


@pytest.mark.gui
def test_gui_demo_opens_noisy_sample_with_widget_docked(monkeypatch):
    """With a display (pytest-xvfb's), the demo opens napari with the sample and the widget."""
    napari = pytest.importorskip("napari")
    seen = {}

    def instead_of_event_loop():
        viewer = napari.current_viewer()
        seen["layers"] = [layer.name for layer in viewer.layers]
        seen["docks"] = list(viewer.window.dock_widgets)
        viewer.close()

    monkeypatch.setattr(napari, "run", instead_of_event_loop)
    assert demo.display_available()
    assert demo.main([]) == 0
    assert seen["layers"] == ["astronaut (clean reference)", "astronaut noisy"]
    assert any(name.startswith("Restore (MemNet)") for name in seen["docks"])
