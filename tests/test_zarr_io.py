"""zarr / OME-Zarr / BigTIFF input and the resumable chunk-by-chunk zarr writer.

Tiny MemNet (M2R2 C8, random weights) saved as a user model; images are crops
of the bundled public-domain astronaut photograph.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

from napari_memnet.restoration.lazy import graph as lazy  # noqa: E402
from napari_memnet.restoration.lazy import zarr_io  # noqa: E402
from napari_memnet.restoration.lazy.plan import is_dask_array  # noqa: E402

from napari_memnet import save_model  # noqa: E402
from napari_memnet.restoration.lazy.schedulers import BlockError  # noqa: E402
from napari_memnet.models import build_model  # noqa: E402
from napari_memnet.sample_data import astronaut_uint8  # noqa: E402


@pytest.fixture
def model():
    torch.manual_seed(0)
    save_model(build_model("memnet", {"in_channels": 1, "blocks": 2, "recursions": 2, "channels": 8}),
               "tiny", task=None)
    return "tiny"


@pytest.fixture
def image():
    return astronaut_uint8()[:120, :100].copy()


def reference(image, model, **kw):
    return lazy.restore_dask(image, kw.pop("task", "denoise"), model=model, cache=False, **kw).compute()


def write_source(path, image, chunks=(40, 40)):
    z = zarr.create_array(str(path), shape=image.shape, chunks=chunks, dtype=image.dtype, zarr_format=2)
    z[:] = image
    return z


def test_zarr_to_zarr_matches_in_memory(tmp_path, model, image):
    write_source(tmp_path / "in.zarr", image)
    events = []
    report = zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model,
                                     chunks=30, progress=events.append)
    assert report.chunks_written == report.chunks_total == 16 and report.chunks_skipped == 0
    assert [e.done for e in events] == list(range(1, 17)) and events[-1].total == 16
    out, axes = zarr_io.open_image(tmp_path / "out.zarr")
    assert out.chunksize == (30, 30)  # written on the block grid: one zarr chunk per block
    np.testing.assert_array_equal(out.compute(), reference(image, model, chunks=30))
    assert len(list((tmp_path / "out.zarr" / zarr_io.DONE_DIR).iterdir())) == 16


def test_ome_zarr_sr_output_and_input(tmp_path, model, image):
    report = zarr_io.restore_to_zarr(image[:60, :50], tmp_path / "sr.ome.zarr", "sr", scale=2, model=model,
                                     chunks=25)
    assert report.shape == (120, 100)
    attrs = json.loads((tmp_path / "sr.ome.zarr" / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.5, 0.5]
    data, axes = zarr_io.open_image(tmp_path / "sr.ome.zarr")
    assert axes == "YX" and data.shape == (120, 100)
    np.testing.assert_array_equal(data.compute(), reference(image[:60, :50], model, task="sr", scale=2, chunks=25))


def test_bigtiff_input_is_read_lazily(tmp_path, model, image):
    tifffile = pytest.importorskip("tifffile")
    stack = np.stack([image[:96, :96], image[24:120, 4:100]])
    tifffile.imwrite(tmp_path / "big.tif", stack, bigtiff=True, tile=(32, 32), metadata={"axes": "ZYX"})
    data, axes = zarr_io.open_image(tmp_path / "big.tif")
    assert is_dask_array(data) and axes == "ZYX" and data.chunksize[-2:] == (32, 32)
    report = zarr_io.restore_to_zarr(tmp_path / "big.tif", tmp_path / "out.zarr", "denoise", model=model, chunks=48)
    assert report.chunks_total == 8
    out, _ = zarr_io.open_image(tmp_path / "out.zarr")
    np.testing.assert_array_equal(out.compute(), reference(stack, model, chunks=48))


def test_resume_after_interruption_writes_only_missing_chunks(tmp_path, model, image):
    write_source(tmp_path / "in.zarr", image)
    cancel = threading.Event()

    def stop_after_five(event):
        if event.done >= 5:
            cancel.set()

    from napari_memnet.restoration.events import Cancelled

    with pytest.raises(Cancelled):
        zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model, chunks=30,
                                progress=stop_after_five, cancel=cancel, scheduler="synchronous")
    marked = len(list((tmp_path / "out.zarr" / zarr_io.DONE_DIR).iterdir()))
    assert marked == 5
    report = zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model, chunks=30)
    assert report.chunks_skipped == 5 and report.chunks_written == 11
    out, _ = zarr_io.open_image(tmp_path / "out.zarr")
    np.testing.assert_array_equal(out.compute(), reference(image, model, chunks=30))
    again = zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model, chunks=30)
    assert again.chunks_written == 0 and again.chunks_skipped == 16


def test_failing_chunk_names_it_and_rerun_completes(tmp_path, model, image):
    src = write_source(tmp_path / "in.zarr", image, chunks=(120, 50))
    chunk_file = tmp_path / "in.zarr" / "0.1"  # the right half of the source
    good = chunk_file.read_bytes()
    chunk_file.write_bytes(b"this is not a compressed zarr chunk")
    with pytest.raises(BlockError, match=r"block \(0, [0-9]\) failed"):
        zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model,
                                chunks=50, scheduler="synchronous")
    done = {p.name for p in (tmp_path / "out.zarr" / zarr_io.DONE_DIR).iterdir()}
    assert "0.1" not in done  # the failed chunk is not marked
    chunk_file.write_bytes(good)  # repair the input, run again
    report = zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model, chunks=50)
    assert report.chunks_skipped == len(done) and report.chunks_written == report.chunks_total - len(done)
    out, _ = zarr_io.open_image(tmp_path / "out.zarr")
    np.testing.assert_array_equal(out.compute(), reference(src[:], model, chunks=50))


def test_destination_checks(tmp_path, model, image):
    write_source(tmp_path / "in.zarr", image)
    zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model, chunks=60)
    with pytest.raises(ValueError, match="different run.*chunks.*overwrite"):
        zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model, chunks=40)
    with pytest.raises(ValueError, match="already exists"):
        zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model, chunks=60,
                                resume=False)
    report = zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model=model,
                                     chunks=40, overwrite=True)
    assert report.chunks_written == report.chunks_total == 9
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a napari-memnet output"):
        zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "mine", "denoise", model=model, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="no such file or folder"):
        zarr_io.open_image(tmp_path / "missing.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ValueError, match="not a zarr"):
        zarr_io.open_image(tmp_path / "empty.zarr")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ValueError, match="not a readable TIFF"):
        zarr_io.open_image(tmp_path / "broken.tif")
    (tmp_path / "image.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported input"):
        zarr_io.open_image(tmp_path / "image.png")


def test_cli_hooks_write_resumable_zarr(tmp_path, model, image, capsys):
    """The ``memnet restore`` hooks: options, output naming, one report line."""
    import argparse

    from napari_memnet.commands import restore as restore_command

    parser = argparse.ArgumentParser()
    for name, default in (("--task", "denoise"), ("--scale", None), ("--axes", None), ("--device", "cpu"),
                          ("--precision", "auto")):
        parser.add_argument(name, default=default)
    restore_command.add_zarr_arguments(parser)
    args = parser.parse_args(["--chunks", "60", "--ome", "--scheduler", "synchronous"])
    write_source(tmp_path / "cells.zarr", image)
    assert zarr_io.is_zarr_path(tmp_path / "cells.zarr") and not zarr_io.is_zarr_path(tmp_path)
    line = restore_command._restore_one_zarr(tmp_path / "cells.zarr", tmp_path / "out", args, model, quiet=True)
    assert "cells_denoise.ome.zarr" in line and "4 chunk(s) written" in line
    again = restore_command._restore_one_zarr(tmp_path / "cells.zarr", tmp_path / "out", args, model, quiet=True)
    assert "0 chunk(s) written, 4 already done" in again
    data, axes = zarr_io.open_image(tmp_path / "out" / "cells_denoise.ome.zarr")
    np.testing.assert_array_equal(data.compute(), reference(image, model, chunks=60))


def test_ome_zarr_05_input_and_levels(tmp_path, image):
    """OME-Zarr 0.5 (zarr v3, metadata under 'ome') is read, level by level."""
    group = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=3)
    stack = np.stack([image, image[::-1]])
    group.create_array("0", shape=stack.shape, chunks=(1, 64, 64), dtype="u1")[:] = stack
    group.create_array("1", shape=(2, 60, 50), chunks=(1, 64, 64), dtype="u1")[:] = stack[:, ::2, ::2]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "z", "type": "space"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0"}, {"path": "1"}]}]}
    full, axes = zarr_io.open_image(tmp_path / "img.ome.zarr")
    assert axes == "ZYX" and full.shape == stack.shape
    np.testing.assert_array_equal(full.compute(), stack)
    half, _ = zarr_io.open_image(tmp_path / "img.ome.zarr", level=1)
    assert half.shape == (2, 60, 50)
    with pytest.raises(ValueError, match="level 2 does not exist"):
        zarr_io.open_image(tmp_path / "img.ome.zarr", level=2)


def test_memnet_restore_cli_end_to_end_on_zarr_and_png(tmp_path, model, image, capsys):
    """``memnet restore`` itself: a zarr input goes out of core to zarr, a PNG
    beside it to TIFF, in one run; a second run resumes (nothing to redo)."""
    import tifffile
    from PIL import Image

    from napari_memnet.cli import main

    write_source(tmp_path / "big.zarr", image)
    Image.fromarray(image).save(tmp_path / "small.png")
    argv = ["restore", str(tmp_path / "big.zarr"), str(tmp_path / "small.png"), "-o", str(tmp_path / "out"),
            "--task", "denoise", "--model", model, "--device", "cpu", "--chunks", "60", "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "restored 2 of 2" in out
    data, _ = zarr_io.open_image(tmp_path / "out" / "big_denoise.zarr")
    np.testing.assert_array_equal(data.compute(), reference(image, model, chunks=60))
    assert tifffile.imread(tmp_path / "out" / "small_denoise.tif").shape == image.shape
    assert main(argv[:2] + argv[3:]) == 0  # the zarr input again: all chunks already done
    assert "already done" in capsys.readouterr().out
