"""Model files: safetensors + JSON card, loading that never unpickles."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import napari_memnet
from napari_memnet.models.files import ModelFileError, list_models, load_model, save_model, user_models_dir
from napari_memnet.models import build_model


def _net(seed=0, **cfg):
    torch.manual_seed(seed)
    base = {"blocks": 2, "recursions": 2, "channels": 8}
    base.update(cfg)
    return build_model("memnet", base)


def test_save_then_load_round_trip_and_listing(tmp_path):
    net = _net()
    info = save_model(net, "my-denoiser", task="denoise", levels={"sigma": [0, 75]},
                      metrics=[{"dataset": "Set12", "level": 25, "psnr": 30.0}])
    assert info.path == user_models_dir() / "my-denoiser.safetensors"
    card = json.loads(info.path.with_suffix(".json").read_text())
    assert card["architecture"] == "memnet" and card["config"]["blocks"] == 2
    assert card["task"] == "denoise" and card["format_version"] == 1
    assert card["input"]["intensity_scale"].startswith("0..1")
    names = [m.name for m in list_models()]
    assert "my-denoiser" in names
    assert [m.name for m in list_models("sr") if m.source == "user"] == []
    loaded = load_model("my-denoiser")
    assert loaded.task == "denoise" and loaded.source == "user"
    for (k, a), b in zip(net.state_dict().items(), loaded.network.state_dict().values()):
        assert torch.equal(a, b), k
    # by path too, and via the public lazy API
    assert napari_memnet.load_model(str(info.path)).name == "my-denoiser"


def test_no_temporary_files_are_left_behind(tmp_path):
    save_model(_net(), "clean", task="denoise", directory=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.json", "clean.safetensors"]


def test_unknown_name_lists_known_models():
    save_model(_net(), "alpha", task="denoise")
    with pytest.raises(ModelFileError, match="no model named 'beta'.*alpha"):
        load_model("beta")


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "x" * 101, ".hidden"])
def test_bad_model_names_are_refused(name):
    with pytest.raises(ValueError, match="invalid model name"):
        save_model(_net(), name, task="denoise")


def test_wrong_shapes_are_reported_with_the_file(tmp_path):
    info = save_model(_net(), "m", task="denoise", directory=tmp_path)
    card_path = info.path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["config"]["channels"] = 16
    card.pop("weights_sha256")
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=r"m\.safetensors.*shape"):
        load_model(info.path)


def test_card_weights_mismatch_is_detected(tmp_path):
    a = save_model(_net(0), "a", task="denoise", directory=tmp_path)
    b = save_model(_net(1), "b", task="denoise", directory=tmp_path)
    os.replace(b.path, a.path)  # a's card now describes other weights
    with pytest.raises(ModelFileError, match="do not match their card"):
        load_model(a.path)


def test_truncated_file_gives_a_clear_error(tmp_path):
    info = save_model(_net(), "t", task="denoise", directory=tmp_path)
    data = info.path.read_bytes()
    info.path.write_bytes(data[: len(data) // 2])
    card_path = info.path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card.pop("weights_sha256")
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=r"t\.safetensors: not a readable safetensors file"):
        load_model(info.path)


def test_future_format_version_is_refused(tmp_path):
    info = save_model(_net(), "f", task="denoise", directory=tmp_path)
    card_path = info.path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["format_version"] = 99
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="format version 99 is newer"):
        load_model(info.path)


def test_missing_and_unexpected_keys(tmp_path):
    from safetensors.torch import save_file

    info = save_model(_net(), "k", task="denoise", directory=tmp_path)
    state = {k: v for k, v in _net().state_dict().items() if not k.startswith("blocks.1.")}
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(info.path))
    card_path = info.path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card.pop("weights_sha256")
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="missing keys.*unexpected keys"):
        load_model(info.path)


def test_plain_torch_state_dict_loads_with_weights_only(tmp_path):
    net = _net(multi_supervised=False)
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    loaded = load_model(path)
    assert loaded.architecture == "memnet"
    assert loaded.network.config.multi_supervised is False and loaded.network.config.blocks == 2
    red = build_model("red30", {"layers": 3, "channels": 8})
    torch.save(red.state_dict(), tmp_path / "red.pt")
    assert load_model(tmp_path / "red.pt").network.config.layers == 3


class _Evil:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_executes_nothing(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        torch.save({"state_dict": _Evil(str(marker))}, fh, pickle_protocol=2)
    assert not marker.exists()
    with pytest.raises(ModelFileError, match="evil.pth: refused to load"):
        load_model(path)
    assert not marker.exists()
    # a bare pickle (not a torch zip) is refused too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(ModelFileError, match="raw.pt"):
        load_model(raw)
    assert not marker.exists()


def test_missing_card_and_missing_file(tmp_path):
    info = save_model(_net(), "nocard", task="denoise", directory=tmp_path)
    info.path.with_suffix(".json").unlink()
    with pytest.raises(ModelFileError, match="model card not found"):
        load_model(info.path)
    with pytest.raises(ModelFileError, match="model file not found"):
        load_model(tmp_path / "absent.safetensors")


def test_default_model_for_a_task_without_bundled_weights_is_a_clear_error(monkeypatch, tmp_path):
    from napari_memnet.models import files as modelfile

    monkeypatch.setattr(modelfile, "BUNDLED_DIR", tmp_path / "no-bundled")
    with pytest.raises(ModelFileError, match="no bundled model for task 'sr'"):
        load_model(None, task="sr")


def test_update_card_records_results_without_touching_the_weights(tmp_path):
    from napari_memnet.models.files import update_card

    info = save_model(_net(), "u", task="denoise", directory=tmp_path)
    before = info.path.read_bytes()
    update_card(info.path, metrics=[{"dataset": "Set12", "level": 25, "psnr": 28.1}])
    assert info.path.read_bytes() == before
    loaded = load_model(info.path)  # checksum still matches
    assert loaded.card["metrics"][0]["psnr"] == 28.1
    with pytest.raises(ValueError, match="cannot change"):
        update_card(info.path, config={})


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    from napari_memnet.core.atomic import atomic_write_text

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_saved_model_files_are_readable_by_others(tmp_path):
    mask = os.umask(0o022)
    try:
        info = save_model(_net(), "perm", task="denoise", directory=tmp_path)
    finally:
        os.umask(mask)
    for path in (info.path, info.path.with_suffix(".json")):
        assert path.stat().st_mode & 0o777 == 0o644, path
