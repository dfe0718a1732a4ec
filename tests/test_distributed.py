"""Schedulers, picklable model specs with a per-process cache, and a real
two-process ``dask.distributed.LocalCluster`` on loopback (127.0.0.1).

The cluster test restores a real photograph crop with a tiny MemNet (M2R2 C8,
random weights) saved as a user model, and checks the cluster result equals the
local-threads result exactly, that each worker loaded the model at most once,
and that killing a worker mid-run is survived (dask reschedules its blocks).
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("zarr")

from napari_memnet import save_model  # noqa: E402
from napari_memnet.models import build_model  # noqa: E402
from napari_memnet.models.spec import model_spec  # noqa: E402
from napari_memnet.restoration.cache import EngineCache, cache_info  # noqa: E402
from napari_memnet.restoration.lazy import schedulers as dist  # noqa: E402
from napari_memnet.restoration.lazy import zarr_io  # noqa: E402
from napari_memnet.sample_data import astronaut_uint8  # noqa: E402


def _tiny(seed=0):
    torch.manual_seed(seed)
    return build_model("memnet", {"in_channels": 1, "blocks": 2, "recursions": 2, "channels": 8})


def test_normalize_scheduler():
    assert dist.normalize_scheduler(None) == "threads"
    assert dist.normalize_scheduler("threads") == "threads"
    assert dist.normalize_scheduler("sync") == "synchronous"
    assert dist.normalize_scheduler(" tcp://127.0.0.1:8786 ") == "tcp://127.0.0.1:8786"
    with pytest.raises(ValueError, match="unknown scheduler"):
        dist.normalize_scheduler("processes-please")
    with pytest.raises(ValueError, match="string or a distributed.Client"):
        dist.normalize_scheduler(4)


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(ValueError, match="cannot connect to the dask scheduler"):
        with dist.scheduler_client("tcp://127.0.0.1:9"):
            pass


def test_model_spec_by_file_and_in_memory(tmp_path):
    net = _tiny()
    save_model(net, "tiny", task="denoise")
    by_name = model_spec("tiny", task="denoise")
    assert by_name.path is not None and by_name.weights is None and os.path.isabs(by_name.path)
    assert by_name.receptive_radius == net.receptive_radius == 10
    in_memory = model_spec(net, task="denoise")
    assert in_memory.path is None and isinstance(in_memory.weights, bytes)
    import pickle

    clone = pickle.loads(pickle.dumps(in_memory))  # what travels to a worker: bytes, no nn.Module
    loaded = clone.load().network.state_dict()
    for key, value in net.state_dict().items():
        assert torch.equal(loaded[key], value)
    cache = EngineCache()
    first = cache.model(by_name, "cpu")
    assert cache.model(by_name, "cpu") is first
    assert cache.info()["loads"] == {f"{by_name.key}|cpu": 1}


@pytest.mark.slow
def test_local_cluster_matches_threads_and_survives_a_killed_worker(tmp_path):
    distributed = pytest.importorskip("distributed")
    save_model(_tiny(), "tiny", task="denoise")
    image = astronaut_uint8()[:128, :128].copy()
    local = zarr_io.restore_to_zarr(image, tmp_path / "local.zarr", "denoise", model="tiny", chunks=32,
                                    device="cpu", scheduler="threads")
    expected, _ = zarr_io.open_image(local.path)
    expected = expected.compute()

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        report = zarr_io.restore_to_zarr(image, tmp_path / "cluster.zarr", "denoise", model="tiny",
                                         chunks=32, device="cpu", scheduler=cluster.scheduler_address)
        assert report.chunks_written == 16
        out, _ = zarr_io.open_image(report.path)
        np.testing.assert_array_equal(out.compute(), expected)
        loads = client.run(cache_info)
        assert len(loads) == 2
        assert all(all(n == 1 for n in info["loads"].values()) for info in loads.values())
        assert sum(len(info["loads"]) for info in loads.values()) >= 1

        # kill one worker process after the first finished chunk: its blocks are rescheduled
        pids = [info["pid"] for info in loads.values()]
        killed = []

        def kill_one(event):
            if event.done >= 1 and not killed:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        report = zarr_io.restore_to_zarr(image, tmp_path / "killed.zarr", "denoise", model="tiny", chunks=32,
                                         device="cpu", scheduler=client, progress=kill_one)
        assert killed and report.chunks_written == 16
        out, _ = zarr_io.open_image(report.path)
        np.testing.assert_array_equal(out.compute(), expected)
