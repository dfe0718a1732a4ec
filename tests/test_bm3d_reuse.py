"""benchmarks/bm3d_compare.py ``--bm3d-from``: BM3D's PSNR taken from the committed record where the
noisy input is the same, which the noise of today's code reproduces exactly (real Set12 images)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _benchmarks import benchmark_modules

from napari_memnet.core.metrics import psnr

RECORD = Path(__file__).resolve().parents[1] / "docs" / "results" / "bm3d_compare_memnet-fast-denoise.json"


@pytest.fixture(scope="module")
def bm3d_compare():
    with benchmark_modules("bm3d_compare") as modules:
        yield modules["bm3d_compare"]


def test_the_record_reused_row_by_row(bm3d_compare, tmp_path):
    rows = bm3d_compare.earlier_bm3d(RECORD, 0, None)
    record = json.loads(RECORD.read_text())
    assert len(rows) == len(record["rows"]) and ("Set12/01", 25.0) in rows
    assert rows[("Set12/01", 25.0)]["bm3d_psnr"] > rows[("Set12/01", 50.0)]["bm3d_psnr"]
    other = tmp_path / "other-seed.json"
    other.write_text(json.dumps({**record, "seed": 1, "bm3d_version": "4.0.3"}))
    assert bm3d_compare.earlier_bm3d(other, 0, "4.0.3") == {}  # another noise draw: nothing reused
    assert bm3d_compare.earlier_bm3d(other, 1, "9.9") == {}  # another BM3D
    assert len(bm3d_compare.earlier_bm3d(other, 1, "4.0.3")) == len(record["rows"])
    assert bm3d_compare.earlier_bm3d(tmp_path / "missing.json", 0, None) == {}


def test_todays_noise_is_the_records_input(bm3d_compare, shared_data):
    """Reuse is keyed on the noisy input: the record's input PSNR is reproduced to 1e-9 dB."""
    rows = bm3d_compare.earlier_bm3d(RECORD, 0, None)
    from napari_memnet.evaluate import load_plane

    for name in ("01", "08"):
        clean = load_plane(shared_data / "test" / "Set12" / f"{name}.png", "denoise").astype("float32") / 255.0
        for sigma in (25.0, 50.0):
            x = bm3d_compare.noisy(clean, f"Set12/{name}", sigma, 0)
            assert abs(psnr(x, clean) - rows[(f"Set12/{name}", sigma)]["input_psnr"]) < 1e-9


def test_image_dirs_replace_the_default_images(bm3d_compare, shared_data, tmp_path):
    """``--image-dir`` restores a folder's own images (every K-th by name), named by the folder; the
    model-only run writes a per-folder summary; a missing folder is refused."""
    import shutil

    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("01", "02", "03"):
        shutil.copy(shared_data / "test" / "Set12" / f"{name}.png", folder / f"{name}.png")
    picked = bm3d_compare.images(shared_data, [folder], every=2)
    assert list(picked) == ["mine/01", "mine/03"]
    assert picked["mine/01"].dtype.name == "float32" and 0.0 <= picked["mine/01"].min() <= picked["mine/01"].max() <= 1.0
    out = tmp_path / "r.json"
    assert bm3d_compare.main(["--model", "memnet-fast-denoise", "--sigmas", "50", "--no-bm3d", "--image-dir", str(folder),
                              "--every", "2", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [r["image"] for r in record["rows"]] == ["mine/01", "mine/03"]
    assert record["summary_by_folder"]["mine"]["50.0"]["images"] == 2
    assert record["summary_by_folder"]["mine"]["50.0"]["model_psnr"] > record["summary_by_folder"]["mine"]["50.0"]["input_psnr"] + 8
    with pytest.raises(SystemExit):
        bm3d_compare.main(["--no-bm3d", "--image-dir", str(tmp_path / "absent")])
