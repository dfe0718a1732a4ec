"""The evaluation protocol (``napari_memnet.evaluate``) and ``memnet eval``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from napari_memnet.cli import main
from napari_memnet.core.color import rgb_to_gray, rgb_to_y, to_uint8
from napari_memnet.core.degrade import bicubic_degrade, modcrop
from napari_memnet.evaluate import RECORD_KEYS, evaluate, load_plane, parse_levels
from napari_memnet.core.metrics import psnr, ssim


@pytest.fixture
def tiny_data(tmp_path):
    """A data folder with two small datasets of real-looking synthetic images."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:44]
    for ds, n in (("TinyA", 2), ("TinyB", 1)):
        (tmp_path / ds).mkdir()
        for i in range(n):
            base = 0.5 + 0.35 * np.sin(yy / (3.0 + i) + xx / 7.0)
            gray = to_uint8(np.clip(base + 0.03 * rng.standard_normal(base.shape), 0, 1))
            Image.fromarray(gray).save(tmp_path / ds / f"g{i}.png")
    rgb = np.stack([to_uint8(0.5 + 0.3 * np.cos(xx / (4.0 + c) - yy / 6.0)) for c in range(3)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "TinyB" / "c0.png")
    (tmp_path / "Empty").mkdir()
    (tmp_path / "Empty" / "notes.txt").write_text("no images here")
    return tmp_path


# ---------------------------------------------------- the published baselines
@pytest.mark.parametrize("scale,published_psnr,published_ssim",
                         [(2, 33.66, 0.9299), (3, 30.39, 0.8682), (4, 28.42, 0.8104)])
def test_set5_bicubic_reproduces_published_baseline(shared_data, scale, published_psnr, published_ssim):
    # published bicubic rows of the SR tables (SRCNN/VDSR/MemNet papers)
    (rec,) = evaluate("sr", shared_data / "test", datasets=["Set5"], levels=[scale])
    assert rec["images"] == 5 and rec["psnr"] is None and rec["model"] is None
    assert rec["baseline_psnr"] == pytest.approx(published_psnr, abs=0.02)
    assert rec["baseline_ssim"] == pytest.approx(published_ssim, abs=0.0005)


def test_classic5_jpeg_reproduces_published_baseline(shared_data):
    records = evaluate("deblock", shared_data / "test", datasets="Classic5", levels="10,20")
    assert [r["level"] for r in records] == [10, 20]
    for rec, published in zip(records, (27.82, 30.12)):
        assert rec["images"] == 5
        assert rec["baseline_psnr"] == pytest.approx(published, abs=0.1)


# ---------------------------------------------------- protocol details
def test_sr_protocol_by_hand(tiny_data):
    # the record equals the protocol written out step by step
    (rec,) = evaluate("sr", tiny_data, datasets=["TinyB"], levels=[3])
    scores = []
    for name in ("c0.png", "g0.png"):
        arr = np.asarray(Image.open(tiny_data / "TinyB" / name))
        y = rgb_to_y(arr) if arr.ndim == 3 else arr
        hr = modcrop(y, 3)
        out = to_uint8(bicubic_degrade(hr / 255.0, 3))
        scores.append((psnr(out, hr, data_range=255, shave=3), ssim(out, hr, data_range=255, shave=3)))
    assert rec["images"] == 2
    assert rec["baseline_psnr"] == pytest.approx(np.mean([s[0] for s in scores]), abs=1e-9)
    assert rec["baseline_ssim"] == pytest.approx(np.mean([s[1] for s in scores]), abs=1e-9)


def test_identity_restore_equals_baseline(tiny_data):
    def identity(plane):
        assert plane.dtype == np.float32 and plane.ndim == 2
        return plane

    for task, level in (("sr", 2), ("deblock", 20), ("denoise", 25)):
        (rec,) = evaluate(task, tiny_data, datasets=["TinyA"], levels=[level], restore_fn=identity)
        assert set(rec) == set(RECORD_KEYS)
        assert rec["model"] == "identity"
        # float32 round trip of the input only: same scores as the baseline
        assert rec["psnr"] == pytest.approx(rec["baseline_psnr"], abs=1e-3)
        assert rec["ssim"] == pytest.approx(rec["baseline_ssim"], abs=1e-4)


def test_denoise_restore_fn_is_scored_without_clipping(tiny_data):
    # a real (if weak) denoiser: a 3x3 box filter helps at sigma 50
    seen = []

    def box(plane):
        seen.append((float(plane.min()), float(plane.max())))
        p = np.pad(plane, 1, mode="reflect")
        return sum(p[i:i + plane.shape[0], j:j + plane.shape[1]] for i in range(3) for j in range(3)) / 9

    (rec,) = evaluate("denoise", tiny_data, datasets=["TinyA"], levels=[50], restore_fn=box)
    assert rec["psnr"] > rec["baseline_psnr"] + 3
    # the noisy input reaches the model unclipped (the clean images span about 0.1..0.9)
    assert min(lo for lo, _ in seen) < 0 and max(hi for _, hi in seen) > 1
    # noisy-input PSNR is 20 log10(255 / sigma) up to the sampling noise of ~2000-pixel images
    assert rec["baseline_psnr"] == pytest.approx(20 * math.log10(255 / 50), abs=0.5)


def test_denoise_noise_is_deterministic_per_image(tiny_data):
    a = evaluate("denoise", tiny_data, datasets=["TinyA", "TinyB"], levels=[15, 25], seed=0)
    b = evaluate("denoise", tiny_data, datasets=["TinyB", "TinyA"], levels=[25, 15], seed=0)
    c = evaluate("denoise", tiny_data, datasets=["TinyA", "TinyB"], levels=[15, 25], seed=1)
    key = lambda r: (r["dataset"], r["level"])  # noqa: E731
    assert sorted(a, key=key) == sorted(b, key=key)
    assert [r["baseline_psnr"] for r in a] != [r["baseline_psnr"] for r in c]


def test_load_plane_colour_conventions(tiny_data):
    rgb = np.asarray(Image.open(tiny_data / "TinyB" / "c0.png"))
    np.testing.assert_array_equal(load_plane(tiny_data / "TinyB" / "c0.png", "denoise"), rgb_to_gray(rgb))
    np.testing.assert_array_equal(load_plane(tiny_data / "TinyB" / "c0.png", "sr"), rgb_to_y(rgb))
    gray = np.asarray(Image.open(tiny_data / "TinyA" / "g0.png"))
    for task in ("denoise", "sr", "deblock"):
        out = load_plane(tiny_data / "TinyA" / "g0.png", task)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, gray)


def test_bad_arguments(tiny_data):
    with pytest.raises(ValueError, match="unknown task"):
        evaluate("inpaint", tiny_data)
    with pytest.raises(ValueError, match="integer >= 2"):
        evaluate("sr", tiny_data, datasets=["TinyA"], levels=[1.5])
    with pytest.raises(ValueError, match="1..100"):
        parse_levels("deblock", "10,120")
    with pytest.raises(ValueError, match="positive"):
        parse_levels("denoise", [-5])
    with pytest.raises(ValueError, match="not found"):
        evaluate("sr", tiny_data, datasets=["Nope"])
    with pytest.raises(ValueError, match="no images"):
        evaluate("sr", tiny_data, datasets=["Empty"])
    with pytest.raises(ValueError, match="does not exist"):
        evaluate("sr", tiny_data / "missing", datasets=["TinyA"])
    with pytest.raises(ValueError, match="returned shape"):
        evaluate("sr", tiny_data, datasets=["TinyA"], levels=[2], restore_fn=lambda p: p[1:])


# ---------------------------------------------------- the CLI
def test_cli_table_and_json(tiny_data, tmp_path, capsys):
    out_json = tmp_path / "out" / "records.json"
    rc = main(["eval", "--task", "deblock", "--data", str(tiny_data), "--datasets", "TinyA,TinyB",
               "--levels", "10,30", "--model", "none", "--json", str(out_json)])
    assert rc == 0
    printed = capsys.readouterr().out
    records = json.loads(out_json.read_text())
    assert [(r["dataset"], r["level"]) for r in records] == [("TinyA", 10), ("TinyA", 30), ("TinyB", 10), ("TinyB", 30)]
    for r in records:
        assert tuple(r) == RECORD_KEYS and r["model"] is None and r["psnr"] is None
        assert f"{r['baseline_psnr']:.2f}" in printed
    assert records[0]["baseline_psnr"] < records[1]["baseline_psnr"]  # higher quality, less error
    assert not list(out_json.parent.glob(".*tmp"))  # atomic write left no temp file


def test_cli_default_model_note_and_errors(tiny_data, capsys):
    from napari_memnet.evaluate import default_model_name

    assert main(["eval", "--task", "sr", "--data", str(tiny_data), "--datasets", "TinyA", "--levels", "2"]) == 0
    captured = capsys.readouterr()
    assert "TinyA" in captured.out
    bundled = default_model_name("sr")
    if bundled is None:
        assert "no bundled model" in captured.err and "model none (baseline only)" in captured.out
    else:  # once the bundled SR weights ship, the default evaluates them
        assert f"model {bundled}" in captured.out
    assert main(["eval", "--task", "sr", "--data", str(tiny_data), "--datasets", "Nope"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", "--task", "sr", "--data", str(tiny_data), "--levels", "2,x"]) == 2
    assert main(["eval", "--task", "sr", "--data", str(tiny_data), "--datasets", "TinyA",
                 "--model", "no-such-model"]) == 2


# ---------------------------------------------------- a real model
def _tiny_memnet(seed=0):
    import torch

    from napari_memnet.models import build_model

    torch.manual_seed(seed)
    return build_model("memnet", {"in_channels": 1, "blocks": 2, "recursions": 2, "channels": 8,
                                  "multi_supervised": True}).eval()


def test_model_for_another_task_is_refused(tiny_data):
    from napari_memnet import save_model

    save_model(_tiny_memnet(), "tiny-denoiser", task="denoise")
    with pytest.raises(ValueError, match="made for task 'denoise'"):
        evaluate("sr", tiny_data, datasets=["TinyA"], levels=[2], model="tiny-denoiser")


def test_real_restore_plane_with_saved_tiny_memnet(tiny_data):
    pytest.importorskip("napari_memnet.restoration.eager",
                        reason="napari_memnet.restoration.eager (restore_plane) is not written yet")
    import torch

    from napari_memnet import load_model, save_model
    from napari_memnet.models import inference_module

    net = _tiny_memnet(1)
    save_model(net, "tiny-sr", task="sr")
    (rec,) = evaluate("sr", tiny_data, datasets=["TinyA"], levels=[2], model="tiny-sr", device="cpu")
    assert rec["model"] == "tiny-sr" and math.isfinite(rec["psnr"]) and 0 < rec["ssim"] <= 1

    # the same numbers from the network run directly on the whole plane
    module = inference_module(load_model("tiny-sr").network)
    scores = []
    for name in ("g0.png", "g1.png"):
        hr = modcrop(np.asarray(Image.open(tiny_data / "TinyA" / name)), 2)
        up = bicubic_degrade(hr / 255.0, 2).astype(np.float32)
        with torch.no_grad():
            out = module(torch.from_numpy(up)[None, None])[0, 0].numpy()
        scores.append(psnr(to_uint8(out), hr, data_range=255, shave=2))
    assert rec["psnr"] == pytest.approx(np.mean(scores), abs=0.05)


@pytest.fixture
def engines_built(monkeypatch):
    """How many ``Engine`` objects were constructed during the test."""
    from napari_memnet.restoration.engine import Engine

    built = []
    construct = Engine.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        construct(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "__init__", counting)
    return built


def test_evaluation_builds_one_engine_for_all_images_and_levels(shared_data, engines_built):
    # the model is loaded, folded and put on its device once, not once per image
    from napari_memnet import load_model, save_model
    from napari_memnet.restoration.eager import restore_plane

    save_model(_tiny_memnet(2), "tiny-denoise", task="denoise")
    before = len(engines_built)
    records = evaluate("denoise", shared_data / "test", datasets=["Set12"], levels=[15, 50], model="tiny-denoise",
                       device="cpu", max_images=2)
    assert len(engines_built) - before == 1
    assert [r["images"] for r in records] == [2, 2]

    # the same scores as a new engine per image (the old way) on the same real images
    loaded = load_model("tiny-denoise")
    before = len(engines_built)
    per_image = evaluate("denoise", shared_data / "test", datasets=["Set12"], levels=[15, 50],
                         restore_fn=lambda plane: restore_plane(loaded, plane, device="cpu"), max_images=2)
    assert len(engines_built) - before == 4  # 2 images x 2 levels
    for rec, ref in zip(records, per_image):
        assert rec["model"] == "tiny-denoise" and math.isfinite(rec["psnr"])
        assert rec["psnr"] == pytest.approx(ref["psnr"], abs=1e-9)
        assert rec["ssim"] == pytest.approx(ref["ssim"], abs=1e-12)


def test_restore_plane_reuses_a_given_engine(shared_data, engines_built):
    from napari_memnet.restoration.engine import Engine
    from napari_memnet.restoration.eager import restore_plane

    net = _tiny_memnet(3)
    plane = load_plane(shared_data / "test" / "Set12" / "01.png", "denoise")[:64, :80].astype(np.float32) / 255
    engine = Engine(net, device="cpu", precision="fp32")
    before = len(engines_built)
    out = restore_plane(engine, plane)
    assert len(engines_built) == before  # nothing rebuilt
    np.testing.assert_allclose(out, restore_plane(net, plane, device="cpu", precision="fp32"), atol=1e-6)
    with pytest.raises(ValueError, match="already fixed"):
        restore_plane(engine, plane, device="cpu")


def test_json_records_are_strict_when_psnr_is_infinite(tiny_data, tmp_path, capsys):
    from napari_memnet.evaluate import json_safe, records_to_json

    flat = tiny_data / "Flat"
    flat.mkdir()
    Image.fromarray(np.full((48, 44), 128, np.uint8)).save(flat / "gray128.png")
    # a flat image survives bicubic down/up and rounding exactly: the baseline PSNR is inf
    (rec,) = evaluate("sr", tiny_data, datasets=["Flat"], levels=[2], restore_fn=lambda p: p)
    assert rec["baseline_psnr"] == math.inf and rec["psnr"] == math.inf
    with pytest.raises(ValueError):  # what the old writer produced is not strict JSON
        json.dumps(rec, allow_nan=False)

    out_json = tmp_path / "flat.json"
    assert main(["eval", "--task", "sr", "--data", str(tiny_data), "--datasets", "Flat,TinyA", "--levels", "2",
                 "--model", "none", "--json", str(out_json)]) == 0
    assert "inf" in capsys.readouterr().out  # the table still says inf
    text = out_json.read_text()
    assert "Infinity" not in text and "NaN" not in text

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    records = json.loads(text, parse_constant=refuse)
    assert [r["dataset"] for r in records] == ["Flat", "TinyA"]
    assert records[0]["baseline_psnr"] is None and records[0]["baseline_ssim"] == pytest.approx(1.0)
    assert math.isfinite(records[1]["baseline_psnr"])
    assert json.dumps(records, allow_nan=False)  # strict round trip

    # the helper itself: nested, numpy scalars, nan and -inf
    data = {"a": [1.5, math.nan, (np.float32(2.0), -math.inf)], "n": 3, "s": "x", "b": True}
    assert json_safe(data) == {"a": [1.5, None, [2.0, None]], "n": 3, "s": "x", "b": True}
    assert json.loads(records_to_json([data])) == [json_safe(data)]
