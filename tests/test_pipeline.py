"""The one per-plane pipeline: eager and lazy restoration give identical
results (every task, RGB(A), SR, uint16, channels, stacks), and the engine
cache shares engines without sharing an out-of-memory retry."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
da = pytest.importorskip("dask.array")

from napari_memnet import save_model  # noqa: E402
from napari_memnet.api import restore  # noqa: E402
from napari_memnet.models.spec import model_spec  # noqa: E402
from napari_memnet.restoration.cache import EngineCache  # noqa: E402
from napari_memnet.restoration.engine import EngineSettings  # noqa: E402
from napari_memnet.restoration.lazy.graph import restore_dask  # noqa: E402
from napari_memnet.sample_data import astronaut_uint8  # noqa: E402

from _nets import OutOfMemoryAbove, random_memnet  # noqa: E402


@pytest.fixture
def models():
    for seed, task in enumerate(("denoise", "sr", "deblock")):
        save_model(random_memnet(2, 2, 8, seed=20 + seed, residual_std=4e-4), f"pipe-{task}", task=task)
    return {task: f"pipe-{task}" for task in ("denoise", "sr", "deblock")}


def _image(case: str) -> tuple[np.ndarray, str, int | None, str | None]:
    img = astronaut_uint8()
    gray = img[40:100, 60:140]
    if case == "denoise":
        return gray, "denoise", None, None
    if case == "deblock":
        return gray, "deblock", None, None
    if case == "sr":
        return gray[:30, :40], "sr", 2, None
    if case == "rgb":
        return np.stack([gray, img[10:70, 0:80], img[100:160, 100:180]], axis=-1), "denoise", None, "YXC"
    if case == "rgba-sr":
        rgba = np.stack([gray, img[10:70, 0:80], img[100:160, 100:180], img[:60, :80]], axis=-1)
        return rgba[:30, :40], "sr", 3, "YXC"
    if case == "uint16":
        return gray.astype(np.uint16) * 200 + 1000, "denoise", None, None
    if case == "channels-uint16":
        return np.stack([gray.astype(np.uint16) * 150, img[:60, :80].astype(np.uint16) + 7000]), "denoise", None, "CYX"
    if case == "float-stack":
        return np.stack([gray, img[:60, :80], img[100:160, 100:180]]).astype(np.float32) * 3.7, "denoise", None, "ZYX"
    raise AssertionError(case)


CASES = ["denoise", "deblock", "sr", "rgb", "rgba-sr", "uint16", "channels-uint16", "float-stack"]


@pytest.mark.parametrize("case", CASES)
def test_eager_and_lazy_results_are_identical(models, case):
    """One block per plane: the lazy path runs exactly the eager path's pipeline on the same planes."""
    data, task, scale, axes = _image(case)
    opts = dict(scale=scale, model=models[task], axes=axes, device="cpu", precision="fp32", tile_size=24)
    eager = restore(data, task, **opts)
    lazy = restore_dask(da.from_array(data), task, chunks=512, **opts).compute(scheduler="synchronous")
    assert lazy.dtype == eager.dtype and lazy.shape == eager.shape
    np.testing.assert_array_equal(lazy, eager)


@pytest.mark.parametrize("case", ["sr", "rgb", "uint16"])
def test_eager_and_lazy_agree_across_block_seams(models, case):
    """Many overlapping blocks: equal up to float summation order (uint8/uint16: one step)."""
    data, task, scale, axes = _image(case)
    opts = dict(scale=scale, model=models[task], axes=axes, device="cpu", precision="fp32")
    eager = restore(data, task, **opts)
    lazy = restore_dask(da.from_array(data), task, chunks=24, **opts).compute()
    assert lazy.dtype == eager.dtype and lazy.shape == eager.shape
    assert np.abs(lazy.astype(np.int64) - eager.astype(np.int64)).max() <= 1


def test_a_cached_engines_out_of_memory_retry_stays_with_its_caller(models):
    """An out-of-memory retry halves the tile of the runner that hit it, never
    the shared engine's: the next caller still starts at the full tile."""
    cache = EngineCache()
    spec = model_spec(models["denoise"], task="denoise")
    engine = cache.engine(spec, EngineSettings("cpu", "fp32", 64))
    assert cache.engine(spec, EngineSettings("cpu", "float32", 64)) is engine  # built once (an alias is the same)
    assert cache.find(spec.key, EngineSettings("cpu", "fp32", 64)) is engine
    assert cache.find(spec.key, EngineSettings("cpu", "fp32", 64, ensemble=2)) is None  # found, never built
    assert cache.info()["loads"] == {f"{spec.key}|cpu": 1} and cache.info()["engines"] == 1
    inner = engine.module
    img = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    engine.module = OutOfMemoryAbove(inner, 30)
    try:
        first = engine.runner()
        out = first.restore(img)
    finally:
        engine.module = inner
    assert first.tile == 32  # this caller went down to 32 px tiles
    assert engine.tile == 64  # the shared engine did not
    second = engine.runner()
    assert second.tile == 64
    np.testing.assert_allclose(out, second.restore(img), atol=1e-5)


def test_eager_progress_recounts_after_an_out_of_memory_retry():
    """A run whose tiles are too big for memory halves its tile, recounts the tiles left and
    reports the tile it ended with; the engine it was given keeps its own."""
    from napari_memnet.api import restore_iter
    from napari_memnet.restoration.engine import Engine

    net = random_memnet(2, 2, 8, seed=5)
    engine = Engine(net, device="cpu", tile_size=64)
    engine.module = OutOfMemoryAbove(engine.module, 30)
    stack = np.random.default_rng(1).random((3, 40, 40)).astype(np.float32)
    events = list(restore_iter(stack, "denoise", model=engine, axes="ZYX"))
    progress, result = events[:-1], events[-1]
    assert progress[-1].done == progress[-1].total == 3 * 4  # 3 planes of 2 x 2 tiles of 20 px
    assert [e.done for e in progress] == list(range(1, 13))
    assert result.tile_size == 32 and engine.tile == 64
    np.testing.assert_allclose(result.data, restore(stack, "denoise", model=net, axes="ZYX", device="cpu"),
                               atol=1e-5)  # smaller tiles, the same result


def test_engine_settings_are_checked_once_and_say_what_was_expected():
    """One value for device, precision, tile size and ensemble: normalised (a
    torch.device, a precision alias), hashable, picklable, with clear errors."""
    import pickle

    import torch

    settings = EngineSettings(torch.device("cpu"), "float32", np.int64(64), 2)
    assert settings == EngineSettings("cpu", "fp32", 64, 2)
    assert settings.as_tuple() == ("cpu", "fp32", 64, 2)
    assert pickle.loads(pickle.dumps(settings)) == settings and hash(settings) == hash(EngineSettings("cpu", "fp32", 64, 2))
    assert EngineSettings().is_default() and not settings.is_default()
    for kwargs, words in [({"device": 3}, "device must be a string"), ({"precision": "fp8"}, "unknown precision"),
                          ({"tile_size": 0}, "tile_size must be a positive integer"),
                          ({"ensemble": 9}, "ensemble")]:
        with pytest.raises(ValueError, match=words):
            EngineSettings(**kwargs)
