"""The denoiser diagnostics of benchmarks/: phase_ensemble.py (the shipped space-to-depth denoiser restored
at each of its grid phases, real Set12 crops: phase (0, 0) is the plain restoration that bm3d_compare.py
measures; the other phases are the same network on the shifted image, so they differ, but only a little)
and denoise_extra_data.py (more training images that keep the check set out)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def modules():
    with benchmark_modules("bm3d_compare", "phase_ensemble") as found:
        yield found


def test_every_phase_is_restored_and_phase_zero_is_the_plain_restoration(modules, shared_data, tmp_path):
    from PIL import Image

    folder = tmp_path / "crops"
    folder.mkdir()
    for name, (top, left) in {"01": (61, 90), "09": (200, 301)}.items():  # odd offsets: not on the 2-grid
        plane = np.asarray(Image.open(shared_data / "test" / "Set12" / f"{name}.png").convert("L"))
        Image.fromarray(plane[top:top + 81, left:left + 94]).save(folder / f"{name}.png")  # odd height too
    args = ["--model", "memnet-fast-denoise", "--sigmas", "30", "--image-dir", str(folder)]
    out, plain = tmp_path / "phases.json", tmp_path / "plain.json"
    assert modules["phase_ensemble"].main([*args, "--json", str(out)]) == 0
    assert modules["bm3d_compare"].main([*args, "--no-bm3d", "--json", str(plain)]) == 0
    record, plain_rows = json.loads(out.read_text()), json.loads(plain.read_text())["rows"]
    assert record["alignment"] == 2
    for row, ref in zip(record["rows"], plain_rows, strict=True):
        assert row["image"] == ref["image"]
        assert list(row["phases"]) == ["0,0", "0,1", "1,0", "1,1"]
        assert row["phases"]["0,0"] == pytest.approx(ref["model_psnr"], abs=1e-6)
        values = list(row["phases"].values())
        assert min(values) > row["input_psnr"] + 5  # every phase denoises
        assert 0 < row["phase_spread"] < 0.5  # the phases differ (s = 2), a little
        assert row["average_gain"] == pytest.approx(row["average_psnr"] - np.mean(values))
    assert record["summary"]["30.0"]["images"] == 2


def test_the_extra_denoising_data_leaves_out_exactly_the_check_photographs(shared_data, tmp_path):
    """benchmarks/denoise_extra_data.py: BSD200 without the 20 photographs bm3d_compare.py checks on
    (``--image-dir .../BSD200 --every 10``), and T91 without the images smaller than a 128 px patch."""
    from PIL import Image

    with benchmark_modules("bm3d_compare", "denoise_extra_data") as found:
        assert found["denoise_extra_data"].main(["--data", str(shared_data), "--out", str(tmp_path)]) == 0
        checked = found["bm3d_compare"].images(shared_data, [shared_data / "train" / "BSD200"], every=10)
    kept = {p.stem for p in (tmp_path / "bsd200-train-nocheck").iterdir()}
    assert len(checked) == 20 and len(kept) == 180
    assert not kept & {name.split("/")[1] for name in checked}
    t91 = list((tmp_path / "t91-min128").iterdir())
    assert 0 < len(t91) < 91 and all(min(Image.open(p).size) >= 128 for p in t91)


def test_zoomed_images_are_twice_as_large_and_keep_what_was_seen(modules, shared_data, tmp_path):
    """``--zoom 2``: every image bicubic-upsampled first, named NAME@x2 (its noise seeded by that name);
    Set12/04@x2 is still the starfish that Train400 holds, so it stays out of the unseen summary."""
    bm3d_compare = modules["bm3d_compare"]
    found = bm3d_compare.images(shared_data)
    zoomed = bm3d_compare.zoomed({k: found[k] for k in ("Set12/04", "cells")}, 2)
    assert list(zoomed) == ["Set12/04@x2", "cells@x2"]
    assert zoomed["cells@x2"].shape == tuple(2 * n for n in found["cells"].shape)
    assert bm3d_compare.zoomed(found, 1) is found
    folder = tmp_path / "Set12"
    folder.mkdir()
    from PIL import Image

    for name in ("04", "07"):
        plane = np.asarray(Image.open(shared_data / "test" / "Set12" / f"{name}.png").convert("L"))
        Image.fromarray(plane[40:100, 50:120]).save(folder / f"{name}.png")
    out = tmp_path / "zoom.json"
    assert bm3d_compare.main(["--model", "memnet-fast-denoise", "--sigmas", "25", "--no-bm3d", "--zoom", "2",
                              "--image-dir", str(folder), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["image"], r["seen_in_training"]) for r in rows] == [("Set12/04@x2", True), ("Set12/07@x2", False)]
    assert all(r["model_psnr"] > r["input_psnr"] + 5 for r in rows)
    with pytest.raises(SystemExit):
        bm3d_compare.main(["--no-bm3d", "--zoom", "0"])


def test_bm3ds_wiener_stage_on_the_models_result(modules, shared_data, tmp_path):
    """``--wiener-pilot``: BM3D's second stage with the model's result as its pilot (needs the bm3d
    package, a tool of benchmarks/ and no dependency of the package: skipped where it is absent)."""
    pytest.importorskip("bm3d", reason="bm3d (pip install bm3d) is not installed; --wiener-pilot needs it")
    from PIL import Image

    folder = tmp_path / "Set12"
    folder.mkdir()
    plane = np.asarray(Image.open(shared_data / "test" / "Set12" / "09.png").convert("L"))
    Image.fromarray(plane[300:364, 40:104]).save(folder / "09.png")
    out = tmp_path / "pilot.json"
    assert modules["bm3d_compare"].main(["--model", "memnet-fast-denoise", "--sigmas", "25", "--wiener-pilot",
                                         "--image-dir", str(folder), "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    (row,) = record["rows"]
    assert row["wiener_pilot_psnr"] > row["input_psnr"] + 5 and row["wiener_pilot_psnr"] != row["model_psnr"]
    assert "wiener_pilot_psnr" in record["summary"]["25.0"]
