"""BioImage Model Zoo export and import (napari_memnet.zoo) with tiny random networks:
the package passes the reference validator, export -> import -> restore gives the same
result, foreign architectures are refused, and nothing in a package is executed or unpickled."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _nets import random_memnet

from napari_memnet.core.imresize import imresize
from napari_memnet.models.files import ModelFileError, save_model
from napari_memnet.zoo.source import upsample_taps
from napari_memnet.zoo.upsample import BicubicUpsample

HAVE_BIOIMAGEIO = importlib.util.find_spec("bioimageio") is not None and \
    importlib.util.find_spec("bioimageio.core") is not None
needs_bioimageio = pytest.mark.skipif(
    not HAVE_BIOIMAGEIO, reason="the 'bioimageio' extra is not installed (pip install -e '.[bioimageio]')")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_packaged_upsampling_is_matlab_bicubic(scale):
    """The SR package's first layer (taps from core.imresize) equals imresize, borders included."""
    first, taps = upsample_taps(scale)
    up = BicubicUpsample(scale, taps, first)
    rng = np.random.default_rng(scale)
    for h, w in [(2, 3), (5, 7), (16, 16), (33, 20)]:
        x = rng.random((2, 1, h, w)).astype(np.float32)
        got = up(torch.from_numpy(x)).numpy()
        ref = imresize(x, output_shape=(h * scale, w * scale))
        assert got.shape == (2, 1, h * scale, w * scale)
        np.testing.assert_allclose(got, ref, atol=1e-6)
    assert dict(up.named_parameters()) == {} and dict(up.named_buffers()) == {}  # the state dict stays the net's


def _tiny(tmp_path, task, unshuffle=1, name="tiny"):
    net = random_memnet(blocks=2, recursions=1, channels=8, unshuffle=unshuffle)
    return save_model(net, name, task=task, directory=tmp_path / "models", levels={"test": True},
                      metrics=[{"dataset": "none", "level": "1", "psnr": 1.0}],
                      training={"data": {"description": f"2 images from {tmp_path / 'clean'}"}})


def test_a_shared_card_keeps_no_absolute_paths():
    from napari_memnet.zoo.document import shareable_card

    card = {"data": "400 images from /home/ann/data/Train400 + C:\\Users\\ann\\T91", "n": 3,
            "dirs": ["/home/ann/cells", ".data/train400-train", "../shared/data/test"],
            "cite": "https://arxiv.org/abs/1708.02209", "command": "memnet eval --data /srv/x/test --json r.json"}
    assert shareable_card(card) == {
        "data": "400 images from Train400 + T91", "n": 3, "dirs": ["cells", ".data/train400-train", "../shared/data/test"],
        "cite": "https://arxiv.org/abs/1708.02209", "command": "memnet eval --data test --json r.json"}
    assert card["dirs"][0] == "/home/ann/cells"  # the model's own card is not changed


def _image(shape=(41, 38), seed=3):
    return np.rint(np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


@needs_bioimageio
def test_an_sr_package_passes_the_validator_and_round_trips(tmp_path):
    """The done-when of issue 20 at tiny scale: validator passes; export -> import -> restore is identical."""
    from napari_memnet import export_bioimageio, import_bioimageio, restore
    from napari_memnet.zoo.export import validate_package

    info = _tiny(tmp_path, "sr", unshuffle=2)  # x3 on a space-to-depth net: sizes in steps of 2, halo in 3s
    pkg = export_bioimageio(info.path, tmp_path / "tiny-sr.zip", scale=3, test_size=48)
    passed, summary = validate_package(pkg)  # bioimageio.core's test_model, as `bioimageio test`
    assert passed, summary
    names = set(zipfile.ZipFile(pkg).namelist())
    assert {"rdf.yaml", "weights.pt", "weights_torchscript.pt", "architecture.py", "README.md", "cover.png",
            "test_input.npy", "test_output.npy"} <= names
    # the output is declared 3 times the input: input pixels are 3 units, output pixels 1
    test_in, test_out = (np.load(zipfile.ZipFile(pkg).open(f"test_{k}.npy")) for k in ("input", "output"))
    assert test_out.shape[-2:] == tuple(3 * n for n in test_in.shape[-2:])

    imported = import_bioimageio(pkg, name="tiny-imported")
    assert imported.card["task"] == "sr" and imported.card["imported_from"]["scale"] == 3
    image = _image()
    for scale in (2, 3):  # one network for every scale, whichever scale the package does
        before = restore(image, "sr", scale=scale, model=info.path, device="cpu")
        after = restore(image, "sr", scale=scale, model="tiny-imported", device="cpu")
        assert before.shape == (41 * scale, 38 * scale) and np.array_equal(before, after)


@needs_bioimageio
def test_the_cli_exports_and_imports_a_fast_denoiser(tmp_path, capsys):
    from napari_memnet import restore
    from napari_memnet.cli import main

    info = _tiny(tmp_path, "denoise", unshuffle=2)
    out = tmp_path / "pkg.zip"
    assert main(["export-bioimageio", str(info.path), str(out), "--no-torchscript"]) == 0
    assert "bioimageio test" in capsys.readouterr().out
    assert main(["import-bioimageio", str(out)]) == 0
    assert "installed tiny" in capsys.readouterr().out
    assert main(["import-bioimageio", str(out)]) == 2  # it exists now: no silent overwrite
    assert "already exists" in capsys.readouterr().err
    folder = tmp_path / "unpacked"
    zipfile.ZipFile(out).extractall(folder)  # a package as a folder installs the same
    assert main(["import-bioimageio", str(folder), "--name", "from-folder"]) == 0
    image = _image((37, 45))
    expected = restore(image, "denoise", model=info.path, device="cpu")
    for name in ("tiny", "from-folder"):
        assert np.array_equal(restore(image, "denoise", model=name, device="cpu"), expected)
    readme = zipfile.ZipFile(out).read("README.md").decode()
    rdf = zipfile.ZipFile(out).read("rdf.yaml").decode()
    assert "2 images from clean" in rdf and str(tmp_path) not in rdf + readme  # no paths of this machine
    assert "Tai" in readme and "ICCV 2017" in readme and "BSD-3-Clause" in readme and "| none | 1 | 1.0" in readme


def _rewrite(pkg: Path, out: Path, replace: dict[str, bytes], rdf_edit=lambda text: text) -> Path:
    """A copy of ``pkg`` with some files replaced; rdf.yaml's sha256 of each follows it."""
    with zipfile.ZipFile(pkg) as src:
        files = {n: src.read(n) for n in src.namelist()}
    rdf = files["rdf.yaml"].decode()
    for name, data in replace.items():
        rdf = rdf.replace(hashlib.sha256(files[name]).hexdigest(), hashlib.sha256(data).hexdigest())
        files[name] = data
    files["rdf.yaml"] = rdf_edit(rdf).encode()
    with zipfile.ZipFile(out, "w") as dst:
        for name, data in files.items():
            dst.writestr(name, data)
    return out


@needs_bioimageio
def test_import_refuses_other_architectures_and_runs_nothing_from_the_package(tmp_path):
    from napari_memnet import export_bioimageio, import_bioimageio

    info = _tiny(tmp_path, "denoise")
    pkg = export_bioimageio(info.path, tmp_path / "tiny.zip", torchscript=False)

    foreign = _rewrite(pkg, tmp_path / "unet.zip", {}, lambda rdf: rdf.replace("callable: MemNet", "callable: UNet2d")
                       .split("\nconfig:")[0] + "\n")
    with pytest.raises(ModelFileError, match="not one of napari-memnet's architectures"):
        import_bioimageio(foreign)

    marker = tmp_path / "code-ran"
    source = zipfile.ZipFile(pkg).read("architecture.py") + f"\nopen({str(marker)!r}, 'w').close()\n".encode()
    installed = import_bioimageio(_rewrite(pkg, tmp_path / "code.zip", {"architecture.py": source}), name="ok")
    assert installed.name == "ok" and not marker.exists()  # our own MemNet was built; the file never ran

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    state = torch.load(zipfile.ZipFile(pkg).open("weights.pt"), weights_only=True)
    state["extra"] = Payload()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # a real checkpoint whose unpickling would touch the marker
    evil = _rewrite(pkg, tmp_path / "pickle.zip", {"weights.pt": buffer.getvalue()})
    with pytest.raises(ModelFileError, match="weights_only"):
        import_bioimageio(evil, name="evil")
    assert not marker.exists()


def test_a_missing_extra_says_how_to_install_it(monkeypatch, tmp_path):
    import sys

    from napari_memnet.zoo.export import export_bioimageio

    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"napari-memnet\[bioimageio\]"):
        export_bioimageio("memnet-fast-denoise", tmp_path / "x.zip")


def test_export_checks_its_arguments(tmp_path):
    from napari_memnet.zoo.export import export_bioimageio

    if not HAVE_BIOIMAGEIO:
        pytest.skip("the 'bioimageio' extra is not installed (pip install -e '.[bioimageio]')")
    info = _tiny(tmp_path, "sr")
    with pytest.raises(ValueError, match="needs a scale"):
        export_bioimageio(info.path, tmp_path / "a.zip")
    with pytest.raises(ValueError, match=".zip"):
        export_bioimageio(info.path, tmp_path / "a.tar", scale=2)
    with pytest.raises(ValueError, match="8-bit"):
        export_bioimageio(info.path, tmp_path / "a.zip", scale=2, test_image=np.full((64, 64), 0.5))
    assert not (tmp_path / "a.zip").exists()
