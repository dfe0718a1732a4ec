"""benchmarks/attention_adapter.py: a layer added to the shipped, frozen fast denoiser and trained alone
(a windowed attention layer between or after its memory blocks, or a full-resolution tail). The screen
is only worth its numbers if step 0 is exactly the shipped model, the windows do not leak, the backbone
never moves and a cut run continues exactly; all checked here on real images with the bundled weights."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from _benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def screen():
    with benchmark_modules("attention_adapter") as found:
        yield found["attention_adapter"]


@pytest.fixture(scope="module")
def backbone():
    from napari_memnet.models.files import load_model

    return load_model("memnet-fast-denoise", task="denoise").network.eval()


def _crops(shared_data, folder, names, size=(70, 90)):
    from PIL import Image

    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        plane = np.asarray(Image.open(shared_data / "test" / "Set12" / f"{name}.png").convert("L"))
        top, left = 17 + 9 * i, 31 + 5 * i  # odd offsets, an odd width: no window or 2-grid multiple
        Image.fromarray(plane[top:top + size[0], left:left + size[1] + 1]).save(folder / f"{name}.png")
    return folder


@pytest.mark.parametrize("after", [0, 1, 2])
@pytest.mark.parametrize("tail_features,train_backbone", [(False, False), (True, True)])
def test_step_zero_is_exactly_the_shipped_model(screen, backbone, shared_data, tmp_path, after, tail_features,
                                                train_backbone):
    from PIL import Image

    plane = np.asarray(Image.open(shared_data / "test" / "Set12" / "09.png").convert("L"), np.float32) / 255
    x = torch.from_numpy(plane[101:101 + 75, 203:203 + 99].copy())[None, None]
    x = x + 25 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    model = screen.Adapted(copy.deepcopy(backbone), after, 16, tail_features, train_backbone).eval()
    with torch.no_grad():
        assert torch.equal(model(x), backbone(x))
    assert all(p.requires_grad == train_backbone for p in model.backbone.parameters())
    model.train()
    assert not model.backbone.training  # its BatchNorm keeps the running statistics


def test_attention_stays_inside_its_window_and_keeps_the_shape(screen):
    torch.manual_seed(0)
    layer = screen.WindowAttention(8, window=4, heads=2, key_dim=4)
    torch.nn.init.normal_(layer.out.weight, std=0.3)
    b = torch.randn(1, 8, 10, 7)  # padded to 12 x 8: the padding is masked out of the keys
    y = layer(b)
    assert y.shape == b.shape and torch.isfinite(y).all()
    b2 = b.clone()
    b2[:, :, 5, 6] += 1.0  # window (1, 1): rows 4..7, columns 4..6 of the image
    changed = (layer(b2) - y).abs().sum(1)[0] > 0
    rows, cols = changed.nonzero().T
    assert changed[5, 6] and rows.min() >= 4 and rows.max() <= 7 and cols.min() >= 4
    # the padded positions take no weight: the same layer on the 12 x 8 zero-padded map differs
    padded = torch.nn.functional.pad(b, (0, 1, 0, 2))
    assert not torch.allclose(layer(padded)[..., :10, :7], y)


def test_a_cut_run_continues_exactly_and_the_backbone_never_moves(screen, backbone, shared_data, tmp_path):
    train = _crops(shared_data, tmp_path / "train", ["01", "02", "03"], size=(80, 80))
    common = ["--after", "1", "--train-dir", str(train), "--steps", "6", "--batch", "2", "--patch", "64",
              "--log-every", "1", "--threads", "1", "--minutes", "5"]
    assert screen.main([*common, "--out", str(tmp_path / "whole")]) == 0
    # the same run cut after 3 steps (its cosine still 6 long), then resumed
    assert screen.main([*common, "--out", str(tmp_path / "cut"), "--stop-after", "3"]) == 0
    assert int(torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"]) == 3
    assert screen.main([*common, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert int(whole["step"]) == int(cut["step"]) == 6
    for key, value in whole["attn"].items():
        assert torch.equal(value, cut["attn"][key]), key
    assert whole["attn"]["out.weight"].abs().sum() > 0  # the layer moved
    events = [json.loads(line) for line in (tmp_path / "cut" / "events.jsonl").read_text().splitlines()]
    assert {"event": "resumed", "step": 3} in events
    # training moves the layer only: the backbone's weights and BatchNorm statistics stay
    model = screen.Adapted(copy.deepcopy(backbone), 1, 16)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    screen.train(screen.parse([*common, "--out", str(tmp_path / "inproc")]), model, lambda record: None)
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in before.items())


def test_the_evaluation_compares_the_layer_with_the_shipped_model_on_the_same_noise(screen, backbone,
                                                                                    shared_data, tmp_path):
    train = _crops(shared_data, tmp_path / "train", ["01", "02"], size=(80, 80))
    data = tmp_path / "data"
    _crops(shared_data, data / "train" / "BSD200", ["05", "06"])
    _crops(shared_data, data / "test" / "Urban100_Y", ["07"])
    val = _crops(shared_data, tmp_path / "val", ["08"])
    out = tmp_path / "run"
    args = ["--after", "2", "--out", str(out), "--train-dir", str(train), "--val-dir", str(val), "--data", str(data),
            "--steps", "3", "--batch", "2", "--patch", "64", "--threads", "1"]
    assert screen.main(args) == 0
    assert screen.main([*args, "--evaluate", "--eval-name", "check"]) == 0
    record = json.loads((out / "check.json").read_text())
    assert record["step"] == 3
    assert [r["set"] for r in record["rows"]].count("held-out") == 3  # sigma 15, 25, 50
    assert {r["image"] for r in record["rows"]} == {"val/08", "BSD200/05", "Urban100_Y/07"}
    assert screen.noisy.__module__ == "bm3d_compare"  # the noise of bm3d_compare.py's check records
    from napari_memnet.core.metrics import psnr
    from napari_memnet.evaluate import load_plane

    row = next(r for r in record["rows"] if r["image"] == "Urban100_Y/07" and r["sigma"] == 25.0)
    clean = load_plane(data / "test" / "Urban100_Y" / "07.png", "denoise").astype(np.float32) / 255
    x = screen.noisy(clean, "Urban100_Y/07", 25.0, 0)
    with torch.no_grad():
        shipped = backbone(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert row["shipped_psnr"] == pytest.approx(psnr(shipped, clean), abs=1e-6)
    assert row["attention_psnr"] != row["shipped_psnr"]
    assert record["summary"]["Urban100 check, sigma 25"]["images"] == 1


def test_a_trained_backbone_moves_is_checkpointed_and_continues_exactly(screen, backbone, shared_data, tmp_path):
    """--backbone-lr: the whole network trains beside the new layer (here the tail that sees the last
    block's features); its weights go into the checkpoint and a cut run continues them exactly."""
    train = _crops(shared_data, tmp_path / "train", ["01", "02", "03"], size=(80, 80))
    common = ["--after", "0", "--tail-features", "--backbone-lr", "1e-4", "--lr", "1e-3", "--train-dir", str(train), "--steps", "4",
              "--batch", "2", "--patch", "64", "--log-every", "1", "--threads", "1", "--minutes", "5"]
    assert screen.main([*common, "--out", str(tmp_path / "whole")]) == 0
    assert screen.main([*common, "--out", str(tmp_path / "cut"), "--stop-after", "2"]) == 0
    assert screen.main([*common, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    for part in ("attn", "backbone"):
        for key, value in whole[part].items():
            assert torch.equal(value, cut[part][key]), (part, key)
    shipped = backbone.state_dict()
    moved = [k for k, v in whole["backbone"].items() if v.is_floating_point() and not torch.equal(v, shipped[k])]
    assert moved and not any("running" in k for k in moved)  # weights move, BatchNorm statistics stay
    # both groups follow one cosine, each from its own peak
    rates = [g["lr"] for g in whole["opt"]["param_groups"]]
    assert rates[1] / rates[0] == pytest.approx(0.1)


def test_the_control_trains_the_backbone_alone(screen, backbone, shared_data, tmp_path):
    """--no-layer: the same training of the backbone without any new layer, the control of --backbone-lr."""
    train = _crops(shared_data, tmp_path / "train", ["01", "02"], size=(80, 80))
    common = ["--no-layer", "--train-dir", str(train), "--steps", "2", "--batch", "2", "--patch", "64", "--threads", "1",
              "--out", str(tmp_path / "control")]
    with pytest.raises(SystemExit, match="needs --backbone-lr"):
        screen.main(common)
    assert screen.main([*common, "--backbone-lr", "1e-4"]) == 0
    state = torch.load(tmp_path / "control" / "checkpoint.pt", weights_only=True)
    assert state["attn"] == {} and len(state["opt"]["param_groups"]) == 1
    shipped = backbone.state_dict()
    assert any(not torch.equal(v, shipped[k]) for k, v in state["backbone"].items() if v.is_floating_point())
