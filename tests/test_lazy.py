"""Lazy restoration of dask/zarr arrays: exact seams, global intensity, laziness,
progress/cancel, and the napari lazy result layer.

The reference for "exact" is the engine's own untiled run
(``restoration.eager.restore_plane`` on the whole plane). Models are tiny MemNets
(M2R2 C8, receptive radius 10) with random weights, saved as user models;
images are crops of the bundled public-domain astronaut photograph.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
da = pytest.importorskip("dask.array")

from napari_memnet import save_model  # noqa: E402
from napari_memnet.core.imresize import imresize  # noqa: E402
from napari_memnet.models import build_model  # noqa: E402
from napari_memnet.restoration.lazy import graph as lazy  # noqa: E402
from napari_memnet.restoration.lazy import plan as lazy_plan  # noqa: E402
from napari_memnet.sample_data import astronaut_uint8  # noqa: E402


def _tiny(seed: int):
    torch.manual_seed(seed)
    net = build_model("memnet", {"in_channels": 1, "blocks": 2, "recursions": 2, "channels": 8})
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture
def models():
    save_model(_tiny(0), "tiny-denoise", task="denoise")
    save_model(_tiny(1), "tiny-sr", task="sr")
    return {"denoise": "tiny-denoise", "sr": "tiny-sr"}


@pytest.fixture
def model_calls(monkeypatch):
    """The chunk locations of the blocks the model ran on (cache hits excluded), in call order."""
    calls = []
    original = lazy.restore_block

    def recording(block, plan, loc, numblocks):
        calls.append(loc)
        return original(block, plan, loc, numblocks)

    monkeypatch.setattr(lazy, "restore_block", recording)
    return calls


@pytest.fixture
def stack():
    """Three real 90 x 110 gray planes (uint8)."""
    img = astronaut_uint8()
    return np.stack([img[0:90, 0:110], img[60:150, 40:150], img[120:210, 100:210]])


def untiled(model_name, planes01, scale=1):
    """The reference: each whole plane through the engine, no tiling."""
    from napari_memnet.restoration.eager import restore_plane
    from napari_memnet.models.files import load_model

    model = load_model(model_name)
    out = []
    for p in planes01:
        p = np.asarray(p, np.float32)
        if scale > 1:
            p = imresize(p, output_shape=(p.shape[0] * scale, p.shape[1] * scale)).astype(np.float32)
        out.append(restore_plane(model, p, device="cpu", precision="fp32", tile_size=None))
    return np.stack(out)


def test_denoise_blocks_are_exact_and_lazy(models, stack, model_calls):
    x = da.from_array(stack.astype(np.float32) / 255.0, chunks=(1, 90, 110))
    result = lazy.restore_dask(x, "denoise", model=models["denoise"], chunks=32, normalization=(0, 1),
                               device="cpu", precision="fp32")
    assert model_calls == []  # nothing computed yet
    assert result.chunks[0] == (1, 1, 1) and len(result.chunks[1]) > 1 and len(result.chunks[2]) > 1
    out = result.compute()
    ref = untiled(models["denoise"], stack.astype(np.float32) / 255.0)
    assert out.dtype == np.float32 and out.shape == stack.shape
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    assert np.abs(out - stack / 255.0).max() > 1e-3  # the model changed the image
    # the engine's own tiles inside a block (tile_size) keep it exact too
    small_tiles = lazy.restore_dask(x, "denoise", model=models["denoise"], chunks=32, normalization=(0, 1),
                                    device="cpu", precision="fp32", tile_size=12).compute()
    np.testing.assert_allclose(small_tiles, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 3])
def test_sr_blocks_are_exact(models, stack, scale):
    planes = stack[:1, :60, :70].astype(np.float32) / 255.0
    result = lazy.restore_dask(da.from_array(planes), "sr", scale=scale, model=models["sr"], chunks=24,
                               normalization=(0, 1), device="cpu", precision="fp32")
    assert result.shape == (1, 60 * scale, 70 * scale)
    assert result.chunks[1][0] == result.chunks[1][0] // scale * scale  # chunks scale times larger
    out = result.compute()
    np.testing.assert_allclose(out, untiled(models["sr"], planes, scale), atol=1e-5, rtol=0)


def test_uint16_uses_one_global_normalization(models, stack):
    data16 = (stack[1].astype(np.uint16) * 200 + 1000)  # 1000..52000
    result = lazy.restore_dask(da.from_array(data16, chunks=45), "denoise", model=models["denoise"],
                               chunks=30, device="cpu", precision="fp32")
    plan = lazy.plan_of(result)
    sample = lazy_plan.sample_intensity(da.from_array(data16, chunks=45))
    assert plan.norms[0].mode == "percentile"
    assert (plan.norms[0].low, plan.norms[0].high) == tuple(np.percentile(sample, lazy_plan.PERCENTILES))
    out = result.compute()
    assert out.dtype == np.uint16
    ref01 = untiled(models["denoise"], [plan.norms[0].forward(data16)])[0]
    ref = plan.norms[0].inverse(ref01, np.uint16)
    assert np.abs(out.astype(np.int64) - ref.astype(np.int64)).max() <= 1  # seam-free up to rounding


def test_uint8_round_trip_and_zarr_input(models, stack, tmp_path):
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=stack.shape, chunks=(1, 45, 55), dtype="u1")
    z[:] = stack
    result = lazy.restore_dask(z, "denoise", model=models["denoise"], chunks=40)
    (norm,) = lazy.plan_of(result).norms
    assert result.dtype == np.uint8 and (norm.low, norm.high) == (0.0, 255.0)
    out = result.compute()
    ref = np.clip(np.rint(untiled(models["denoise"], stack / 255.0) * 255), 0, 255)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("case", ["rgb-sr", "rgba", "channels-uint16"])
def test_lazy_equals_restore_on_numpy(models, case):
    """Same layouts and intensity rules as ``restore`` (small arrays: the
    intensity sample is the whole array, so the maps are identical)."""
    from napari_memnet.api import restore

    img = astronaut_uint8()
    if case == "rgb-sr":
        task, scale, axes = "sr", 2, "YXC"
        data = np.stack([img[:40, :50], img[10:50, 5:55], img[20:60, 30:80]], axis=-1)
    elif case == "rgba":
        task, scale, axes = "denoise", None, "YXC"
        data = np.stack([img[:70, :60], img[5:75, :60], img[10:80, 20:80], img[:70, 100:160]], axis=-1)
    else:
        task, scale, axes = "denoise", None, "CYX"
        data = np.stack([img[:70, :60].astype(np.uint16) * 150, img[70:140, 60:120].astype(np.uint16) + 7000])
    model = models["sr" if task == "sr" else "denoise"]
    lazy_out = lazy.restore_dask(da.from_array(data), task, scale=scale, model=model, axes=axes, chunks=24,
                                 device="cpu", precision="fp32").compute()
    eager = restore(data, task, scale=scale, model=model, axes=axes, device="cpu", precision="fp32")
    assert lazy_out.dtype == eager.dtype and lazy_out.shape == eager.shape
    assert np.abs(lazy_out.astype(np.int64) - eager.astype(np.int64)).max() <= 1


def test_only_requested_planes_are_computed(models, stack, model_calls):
    result = lazy.restore_dask(da.from_array(stack, chunks=(1, 90, 110)), "denoise",
                               model=models["denoise"], chunks=48)
    plane = np.asarray(result[2])
    calls = model_calls
    assert calls and {loc[0] for loc in calls} == {2}
    n = len(calls)
    again = np.asarray(result[2])  # served by the LRU block cache
    np.testing.assert_array_equal(plane, again)
    assert len(model_calls) == n


def test_images_smaller_than_the_halo(models):
    """An axis shorter than the halo is one chunk without overlap (dask refuses a depth > size)."""
    from napari_memnet.api import restore

    tiny = astronaut_uint8()[:8, :30]
    for task, scale in (("denoise", None), ("sr", 3)):
        model = models["sr" if scale else "denoise"]
        out = lazy.restore_dask(da.from_array(tiny), task, scale=scale, model=model, chunks=12).compute()
        eager = restore(tiny, task, scale=scale, model=model)
        assert out.shape == eager.shape and np.abs(out.astype(int) - eager.astype(int)).max() <= 1


def test_default_and_custom_chunks():
    assert lazy_plan.choose_chunks((3, 5000, 300), "ZYX", 74, device="cpu") == (
        (1, 1, 1), (1024,) * 4 + (904,), (300,))
    # the last chunk is never shorter than the halo; the grid stays regular
    yx = lazy_plan.choose_chunks((1000, 1000), "YX", 74, chunks=490)
    assert yx[0] == (495, 495, 10) or all(c >= 74 for c in yx[0])
    assert all(c >= 74 for c in yx[0]) and len(set(yx[0][:-1])) == 1
    assert lazy_plan.choose_chunks((2, 100, 100, 3), "TYXC", 10, chunks={"Y": 50, "X": 25}) == (
        (1, 1), (50, 50), (25,) * 4, (3,))
    with pytest.raises(ValueError, match="positive integer"):
        lazy_plan.choose_chunks((100, 100), "YX", 10, chunks=0)


def test_bad_input_is_rejected(models, stack):
    x = da.from_array(stack)
    with pytest.raises(ValueError, match="unknown task"):
        lazy.restore_dask(x, "dehaze", model=models["denoise"])
    with pytest.raises(ValueError, match="needs a scale"):
        lazy.restore_dask(x, "sr", model=models["sr"])
    with pytest.raises(ValueError, match="axes"):
        lazy.restore_dask(x, "denoise", model=models["denoise"], axes="YX")
    with pytest.raises(ValueError, match="made for task"):
        lazy.restore_dask(x, "denoise", model=models["sr"])
    with pytest.raises(ValueError, match="integer or floating-point"):
        lazy.restore_dask(da.from_array(np.zeros((20, 20), bool)), "denoise", model=models["denoise"])
    with pytest.raises(ValueError, match="scheduler"):
        lazy.restore_dask(x, "denoise", model=models["denoise"], scheduler="gpu-cluster")
    with pytest.raises(ValueError, match="low < high"):
        lazy.restore_dask(x, "denoise", model=models["denoise"], normalization=(1, 1))


def test_compute_iter_progress_and_cancel(models, stack):
    from napari_memnet.restoration.events import Cancelled

    result = lazy.restore_dask(da.from_array(stack, chunks=(1, 90, 110)), "denoise",
                               model=models["denoise"], chunks=45, cache=False)
    events = []
    out = lazy.compute(result, progress=events.append, scheduler="synchronous")
    assert events[-1].done == events[-1].total == result.npartitions
    np.testing.assert_array_equal(out, result.compute(scheduler="synchronous"))

    cancel = threading.Event()

    def stop_early(event):
        if event.done > 0:
            cancel.set()

    with pytest.raises(Cancelled):
        lazy.compute(result, progress=stop_early, cancel=cancel, scheduler="threads")
    with pytest.raises(Cancelled):  # a callable works too, as for restore()
        lazy.compute(result, cancel=lambda: True, scheduler="synchronous")


def test_restore_dask_iter_speaks_restore_iter(models, stack):
    """Same events as the eager ``restore_iter``: TileProgress per block, then a RestoreResult."""
    from napari_memnet.restoration.events import RestoreResult, TileProgress
    from napari_memnet.api import restore

    calls = []
    events = list(lazy.restore_dask_iter(da.from_array(stack), "denoise", model=models["denoise"], chunks=45,
                                         progress=lambda done, total: calls.append((done, total))))
    assert all(isinstance(e, TileProgress) for e in events[:-1]) and isinstance(events[-1], RestoreResult)
    assert [e.done for e in events[:-1]] == list(range(1, 19)) and calls[-1] == (18, 18)  # 3 x 2 x 3 blocks
    assert events[-1].model_name == models["denoise"] and events[-1].axes == "ZYX"
    eager = restore(stack, "denoise", model=models["denoise"])
    assert np.abs(events[-1].data.astype(int) - eager.astype(int)).max() <= 1


@pytest.mark.gui
def test_napari_lazy_layer_computes_only_viewed_plane(make_napari_viewer, models, stack, model_calls):
    from napari_memnet._widgets.lazy_layer import add_lazy_result

    reads = []

    def record(block, block_info=None):
        reads.append(block_info[0]["chunk-location"][0])
        return block

    source = da.from_array(stack, chunks=(1, 90, 110)).map_blocks(record, dtype=stack.dtype)
    viewer = make_napari_viewer()
    layer = viewer.add_image(source, name="cells")
    viewer.dims.set_current_step(0, 1)
    reads.clear()
    result_layer = add_lazy_result(viewer, layer, "denoise", model=models["denoise"], chunks=48)
    result = result_layer.data
    assert lazy_plan.is_dask_array(result) and result.shape == stack.shape
    viewed = np.asarray(result_layer._slice.image.view)  # what napari rendered
    calls = model_calls
    assert calls and {loc[0] for loc in calls} == {1}  # only the viewed plane was restored
    assert set(reads) <= {1}
    np.testing.assert_array_equal(viewed, np.asarray(result[1]))
    viewer.dims.set_current_step(0, 2)
    assert {loc[0] for loc in model_calls} == {1, 2}


def test_public_restore_is_lazy_for_dask_and_uses_a_scheduler_for_numpy():
    """``napari_memnet.restore`` itself: dask in -> lazy dask out (exact), and the
    same blocks computed through a scheduler or ``restore_iter`` give the same."""
    import napari_memnet
    from napari_memnet.restoration.events import RestoreResult, TileProgress
    from napari_memnet.api import restore_iter
    from napari_memnet.models import build_model

    torch.manual_seed(0)
    net = build_model("memnet", {"blocks": 1, "recursions": 1, "channels": 4})
    img = (np.random.default_rng(0).random((70, 90)) * 255).astype(np.uint8)
    eager = napari_memnet.restore(img, "denoise", model=net)
    lazy = napari_memnet.restore(da.from_array(img, chunks=(40, 40)), "denoise", model=net)
    assert isinstance(lazy, da.Array) and lazy.shape == img.shape and lazy.dtype == np.uint8
    np.testing.assert_array_equal(lazy.compute(), eager)
    np.testing.assert_array_equal(
        napari_memnet.restore(img, "denoise", model=net, scheduler="threads", chunks=(40, 40)), eager)
    events = list(restore_iter(da.from_array(img, chunks=(40, 40)), "denoise", model=net))
    assert len(events) >= 2 and all(isinstance(e, TileProgress) for e in events[:-1])
    assert isinstance(events[-1], RestoreResult)
    np.testing.assert_array_equal(events[-1].data, eager)


def _set12_crop(shared_data):
    from PIL import Image

    return np.asarray(Image.open(shared_data / "test" / "Set12" / "01.png"))[:96, :120]


def test_dask_restore_result_names_the_resolved_device_and_precision(models, shared_data):
    """The RestoreResult of the dask path says what ran ("cpu", "fp32", the tile),
    never the request "auto", and agrees with the in-memory path."""
    from napari_memnet.core.devices import resolve_device, resolve_precision
    from napari_memnet.api import restore_iter

    img = _set12_crop(shared_data)
    dask_result = list(lazy.restore_dask_iter(da.from_array(img), "denoise", model=models["denoise"], chunks=48,
                                              scheduler="synchronous"))[-1]
    eager = list(restore_iter(img, "denoise", model=models["denoise"]))[-1]
    device = resolve_device("auto")
    assert dask_result.device == eager.device == str(device)
    assert dask_result.precision == eager.precision == resolve_precision("auto", device)
    assert dask_result.tile_size == eager.tile_size > 0
    if device.type == "cpu":  # this CPU machine
        assert (dask_result.device, dask_result.precision) == ("cpu", "fp32")
    np.testing.assert_array_equal(dask_result.data, eager.data)

    # an explicit request through the threads scheduler is reported as run
    explicit = list(lazy.restore_dask_iter(da.from_array(img), "denoise", model=models["denoise"], chunks=48,
                                           device="cpu", precision="fp32", tile_size=40))[-1]
    assert (explicit.device, explicit.precision, explicit.tile_size) == ("cpu", "fp32", 40)


def test_dask_restore_result_on_a_distributed_cluster_asks_the_workers(models, shared_data):
    distributed = pytest.importorskip("distributed")
    img = _set12_crop(shared_data)
    # one in-process worker (cheap); the process-based cluster is tests/test_distributed.py's
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        result = list(lazy.restore_dask_iter(da.from_array(img), "denoise", model=models["denoise"], chunks=48,
                                             scheduler=client))[-1]
    from napari_memnet.core.devices import resolve_device, resolve_precision

    device = resolve_device("auto")  # the worker runs on this machine
    assert (result.device, result.precision) == (str(device), resolve_precision("auto", device))
    assert result.tile_size > 0 and result.data.shape == img.shape
