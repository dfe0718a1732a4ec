"""The "Restore (MemNet)" widget in a real napari viewer (pytest-qt under Xvfb).

Models are tiny MemNets (M2R2 C8, random weights) saved as user models: the
widget, the worker thread and the engine are all real; only the network is small.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
torch = pytest.importorskip("torch")

from napari_memnet import restore, save_model  # noqa: E402
from napari_memnet.models import build_model  # noqa: E402
from napari_memnet.sample_data import astronaut_uint8  # noqa: E402

pytestmark = pytest.mark.gui


def _tiny(seed: int):
    torch.manual_seed(seed)
    return build_model("memnet", {"in_channels": 1, "blocks": 2, "recursions": 2,
                                  "channels": 8, "multi_supervised": True})


@pytest.fixture(autouse=True)
def _only_user_models(monkeypatch, tmp_path):
    """Hide the bundled weights (when they ship) so these tests see only their tiny models."""
    import napari_memnet.models.files as modelfile

    empty = tmp_path / "no-bundled-weights"
    empty.mkdir()
    monkeypatch.setattr(modelfile, "BUNDLED_DIR", empty)


@pytest.fixture
def tiny_models():
    save_model(_tiny(0), "tiny-denoise", task="denoise")
    save_model(_tiny(1), "tiny-sr", task="sr")
    return {"denoise": "tiny-denoise", "sr": "tiny-sr"}


@pytest.fixture
def crop():
    """A real photograph (bundled public-domain crop) on the 0..1 scale."""
    return astronaut_uint8()[64:128, 96:160].astype(np.float32) / 255.0


def open_widget(viewer):
    from napari_memnet._widgets.restore_widget import RestoreWidget

    _dock, widget = viewer.window.add_plugin_dock_widget("napari-memnet", "Restore (MemNet)")
    assert isinstance(widget, RestoreWidget)
    return widget


def shown(magicgui_widget) -> bool:
    """Visible once the dock is shown (the test viewer's window itself stays hidden)."""
    return not magicgui_widget.native.isHidden()


def hidden(magicgui_widget) -> bool:
    return magicgui_widget.native.isHidden()


def error_messages():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [str(n.message) for n in notification_manager.records
            if n.severity == NotificationSeverity.ERROR]


def test_opens_from_manifest_with_models_and_devices(make_napari_viewer, tiny_models, crop):
    viewer = make_napari_viewer()
    viewer.add_image(crop, name="photo")
    widget = open_widget(viewer)
    assert widget.image.value is viewer.layers["photo"]
    assert "tiny-denoise" in widget.model.choices
    assert widget.device.choices[0] == "auto"
    assert widget.device.native.itemText(0).startswith("auto (")
    assert hidden(widget.scale)
    widget.task.value = "sr"  # scale appears, model list follows the task
    assert shown(widget.scale) and widget.model.choices == ("tiny-sr",)
    widget.task.value = "deblock"
    assert hidden(widget.scale)
    assert not widget.run_button.enabled and shown(widget.model_message)


def test_model_list_refreshes_when_opened(make_napari_viewer, qtbot, tiny_models):
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    save_model(_tiny(2), "tiny-new", task="denoise")
    assert "tiny-new" not in widget.model.choices
    qtbot.mouseClick(widget.model.native, Qt.MouseButton.LeftButton)
    assert "tiny-new" in widget.model.choices
    widget.model.native.hidePopup()
    save_model(_tiny(3), "tiny-newer", task="denoise")
    qtbot.keyClick(widget.model.native, Qt.Key.Key_A)  # typing does not re-read the folders
    assert "tiny-newer" not in widget.model.choices
    qtbot.keyClick(widget.model.native, Qt.Key.Key_F4)  # the key that opens the list does
    assert "tiny-newer" in widget.model.choices
    widget.model.native.hidePopup()


def test_denoise_2d_adds_new_layer_preserving_placement(make_napari_viewer, tiny_models, crop):
    viewer = make_napari_viewer()
    layer = viewer.add_image(crop, name="cells", scale=(0.5, 0.25), translate=(10.0, -3.0),
                             metadata={"pixel_um": 0.25}, contrast_limits=(0.1, 0.9),
                             colormap="magma")
    before = crop.copy()
    widget = open_widget(viewer)
    result = widget.run_blocking(timeout=60)
    assert result is not None and result.name == "cells [denoised]"
    assert len(viewer.layers) == 2 and result is not layer
    np.testing.assert_array_equal(layer.data, before)  # input untouched
    assert result.data.shape == crop.shape
    np.testing.assert_allclose(result.scale, layer.scale)
    np.testing.assert_allclose(result.translate, layer.translate)
    assert result.metadata["pixel_um"] == 0.25
    assert result.metadata["napari_memnet"]["model"] == "tiny-denoise"
    np.testing.assert_allclose(result.contrast_limits, (0.1, 0.9))
    assert result.colormap.name == "magma"
    expected = restore(crop, "denoise", model="tiny-denoise")
    np.testing.assert_allclose(result.data, expected, atol=1e-5)
    assert "Done" in widget.status.value


def test_replace_previous_result(make_napari_viewer, tiny_models, crop):
    viewer = make_napari_viewer()
    viewer.add_image(crop, name="img")
    widget = open_widget(viewer)
    first = widget.run_blocking(timeout=60)
    widget.replace.value = True
    again = widget.run_blocking(timeout=60)
    assert again.name == first.name and len(viewer.layers) == 2
    assert first.metadata["napari_memnet"]["model"] == "tiny-denoise"
    widget.replace.value = False
    widget.run_blocking(timeout=60)
    assert len(viewer.layers) == 3


def test_sr_x2_shape_scale_and_overlay(make_napari_viewer, tiny_models, crop):
    viewer = make_napari_viewer()
    low = crop[:32, :40]
    layer = viewer.add_image(low, name="low", scale=(2.0, 2.0), translate=(0.5, 0.5))
    widget = open_widget(viewer)
    widget.task.value = "sr"
    widget.scale.value = 2
    result = widget.run_blocking(timeout=60)
    assert result.name == "low [SR x2]"
    assert result.data.shape == (64, 80)
    np.testing.assert_allclose(result.scale, (1.0, 1.0))
    # output pixel 0 is centred on input position -0.25 (bicubic pixel-centre convention),
    # and the last output pixel on input position W - 0.75: both layers cover the same world box
    np.testing.assert_allclose(result.data_to_world((0, 0)), layer.data_to_world((-0.25, -0.25)))
    np.testing.assert_allclose(result.data_to_world((63, 79)), layer.data_to_world((31.25, 39.25)))
    np.testing.assert_array_equal(layer.data, crop[:32, :40])


def test_stack_current_plane_then_whole_stack(make_napari_viewer, tiny_models, crop):
    viewer = make_napari_viewer()
    stack = np.stack([crop[:32, :32], crop[16:48, 16:48], crop[32:, 32:]])
    layer = viewer.add_image(stack, name="stack", scale=(3.0, 1.0, 1.0), translate=(5.0, 0, 0))
    widget = open_widget(viewer)
    assert shown(widget.stack_mode)
    viewer.dims.set_current_step(0, 1)
    plane = widget.run_blocking(timeout=60)
    assert plane.data.shape == (1, 32, 32)
    assert plane.translate[0] == pytest.approx(5.0 + 1 * 3.0)  # sits on plane 1
    np.testing.assert_allclose(plane.data[0], restore(stack[1], "denoise", model="tiny-denoise"),
                               atol=1e-5)
    widget.stack_mode.value = "whole stack"
    whole = widget.run_blocking(timeout=60)
    assert whole.data.shape == stack.shape
    np.testing.assert_allclose(whole.translate, layer.translate)
    np.testing.assert_allclose(whole.data[1], plane.data[0], atol=1e-5)


def test_camera_noise_plane_and_stack(make_napari_viewer, tiny_models, crop):
    """uint16 camera counts: the camera option (denoising only) restores the plane on screen and the
    whole stack as ``restore(..., camera=True)`` does, each plane with its own noise estimate; RGB is
    refused with a message."""
    from napari.utils.notifications import notification_manager

    from napari_memnet.core.camera import poisson_gaussian

    viewer = make_napari_viewer()
    counts = np.stack([poisson_gaussian(crop, peak, 2.0, 100.0, rng=k) for k, peak in enumerate((15.0, 60.0))])
    layer = viewer.add_image(counts, name="counts")
    widget = open_widget(viewer)
    assert shown(widget.camera)
    widget.task.value = "sr"
    assert hidden(widget.camera)
    widget.task.value = "denoise"
    widget.camera.value = True
    viewer.dims.set_current_step(0, 1)
    plane = widget.run_blocking(timeout=60)
    expected = restore(counts, "denoise", model="tiny-denoise", camera=True)
    assert plane.data.dtype == np.uint16
    np.testing.assert_array_equal(plane.data[0], expected[1])
    widget.stack_mode.value = "whole stack"
    np.testing.assert_array_equal(widget.run_blocking(timeout=60).data, expected)
    assert not np.array_equal(expected[1], restore(counts[1], "denoise", model="tiny-denoise"))
    np.testing.assert_array_equal(layer.data, counts)  # the input is untouched
    rgb = viewer.add_image(np.stack([counts[0]] * 3, -1).astype(np.uint8), name="rgb", rgb=True)
    before = len(notification_manager.records)
    assert widget.run(rgb) is None
    assert "camera noise applies to denoising gray layers" in str(notification_manager.records[before:][-1].message)


def test_rgb_image(make_napari_viewer, tiny_models):
    viewer = make_napari_viewer()
    rgb = np.stack([astronaut_uint8()[:48, :48]] * 3, axis=-1)
    rgb[..., 0] = rgb[..., 0] // 2
    layer = viewer.add_image(rgb, name="rgb")
    assert layer.rgb
    widget = open_widget(viewer)
    assert hidden(widget.stack_mode)
    result = widget.run_blocking(timeout=60)
    assert result.rgb and result.data.shape == (48, 48, 3)
    np.testing.assert_array_equal(layer.data, np.stack([astronaut_uint8()[:48, :48]] * 3, -1)
                                  // np.array([2, 1, 1], dtype=np.uint8))


def test_cancel_mid_run_adds_nothing(make_napari_viewer, qtbot, tiny_models):
    viewer = make_napari_viewer()
    big = astronaut_uint8().astype(np.float32) / 255.0
    viewer.add_image(big, name="big")
    widget = open_widget(viewer)
    widget.tile_size.value = 64  # many tiles, so the run is cancelled between two of them
    seen = []

    def cancel_on_first(event):
        seen.append(event)
        widget.cancel()

    worker = widget.run(start=False)
    worker.yielded.connect(cancel_on_first)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    assert seen and seen[0].done < seen[0].total
    assert widget.last_outcome.cancelled
    assert widget.worker is None and len(viewer.layers) == 1
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_ui_stays_responsive_during_run(make_napari_viewer, qtbot, tiny_models):
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    viewer.add_image(astronaut_uint8().astype(np.float32) / 255.0, name="big")
    widget = open_widget(viewer)
    widget.tile_size.value = 64
    ticks: list[float] = []
    progress_while_running: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    worker = widget.run(start=False)
    worker.yielded.connect(lambda e: progress_while_running.append(widget.progress.value))
    start = time.perf_counter()
    worker.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    timer.stop()
    during = [t for t in ticks if t >= start]
    assert len(during) >= 3, "the event loop did not run while restoring"
    assert max(np.diff([start, *during])) < 1.5  # never frozen for long
    assert progress_while_running and progress_while_running[-1] >= 1
    assert widget.last_result_layer is not None


def test_bad_inputs_give_notifications_not_crashes(make_napari_viewer, tiny_models, crop):
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    labels = viewer.add_labels(np.zeros((16, 16), dtype=np.uint8), name="labels")
    points = viewer.add_points([[1, 1]], name="pts")
    assert widget.run(labels) is None
    assert any("Labels layer" in m for m in error_messages())
    viewer.layers.selection.active = points  # no image layer at all: the active layer is used
    assert widget.run() is None
    assert any("Points layer" in m for m in error_messages())
    tiny = viewer.add_image(np.ones((1, 1), dtype=np.float32), name="one pixel")
    assert widget.run(tiny) is None
    assert any("1x1 pixels" in m for m in error_messages())
    with_nan = crop.copy()
    with_nan[3, 4] = np.nan
    nan_layer = viewer.add_image(with_nan, name="nan")
    assert widget.run_blocking(nan_layer, timeout=60) is None  # the scan runs in the worker
    assert any("'nan'" in m and "NaN" in m for m in error_messages())
    assert len(viewer.layers) == 4  # nothing added
    np.testing.assert_array_equal(np.isnan(nan_layer.data), np.isnan(with_nan))


def test_no_model_for_task_is_a_clear_message(make_napari_viewer, crop):
    viewer = make_napari_viewer()
    viewer.add_image(crop, name="img")
    widget = open_widget(viewer)
    assert shown(widget.model_message) and "No model" in widget.model_message.value
    assert widget.run() is None
    assert any("No MemNet model" in m for m in error_messages())


def test_dask_stack_gets_a_lazy_result_layer(make_napari_viewer, tiny_models):
    da = pytest.importorskip("dask.array")
    viewer = make_napari_viewer()
    stack = np.stack([astronaut_uint8()[i * 40:i * 40 + 48, 60:108] for i in range(3)])
    layer = viewer.add_image(da.from_array(stack, chunks=(1, 48, 48)), name="lazy")
    viewer.dims.set_current_step(0, 2)
    widget = open_widget(viewer)
    widget.stack_mode.value = "whole stack"
    result = widget.run_blocking(timeout=60)  # planned in the worker: nothing restored up front
    assert result.name == "lazy [denoised]" and type(result.data).__module__.startswith("dask")
    assert result.data.shape == stack.shape and "lazy" in widget.status.value
    eager = restore(stack[2], "denoise", model="tiny-denoise")
    assert np.abs(np.asarray(result.data[2]).astype(int) - eager.astype(int)).max() <= 1
    assert type(layer.data).__module__.startswith("dask")


def test_progress_line_and_axes_helpers():
    """The pure helpers behind the progress line and the engine's axes strings."""
    from napari.layers import Image

    from napari_memnet._widgets import layer_io
    from napari_memnet._widgets.progress import progress_text
    from napari_memnet.core.timefmt import format_seconds

    assert progress_text(3, 16, 1.24, 5.08) == "tile 3/16 \u00b7 1.2 s elapsed \u00b7 ETA 5.1 s"
    assert progress_text(16, 16, 30.0, None).endswith("ETA 0.0 s")
    assert format_seconds(None, "words") == "?" and format_seconds(185, "words") == "3 min 05 s"
    assert layer_io.layer_axes(Image(np.zeros((4, 5, 6)))) == "ZYX"
    assert layer_io.layer_axes(Image(np.zeros((2, 4, 5, 6)))) == "TZYX"
    assert layer_io.layer_axes(Image(np.zeros((4, 5, 3), np.uint8), rgb=True)) == "YXC"
    assert layer_io.layer_axes(Image(np.zeros((4, 5, 6))), plane_only=True) == "YX"
    assert layer_io.result_name("cells", "sr", 3) == "cells [SR x3]"
    with pytest.raises(ValueError, match="unknown task"):
        layer_io.result_name("cells", "sharpen")


def test_reading_checking_planning_and_model_loading_run_in_the_worker(make_napari_viewer, tiny_models,
                                                                       crop, thread_spy):
    """The napari main thread only reads the form: the worker reads the pixels, scans them for
    NaN/inf, loads the model (eager), or plans the lazy graph and samples it (dask input)."""
    import threading

    from napari_memnet._widgets import layer_io, lazy_layer
    from napari_memnet.restoration import eager
    from napari_memnet.restoration.lazy import graph

    da = pytest.importorskip("dask.array")
    spy, threads = thread_spy, thread_spy.threads
    spy(layer_io, "take_plane")  # reading a plane
    spy(eager, "check_image")  # the NaN/inf scan
    spy(graph, "model_spec")  # lazy: loading and hashing the model
    spy(graph, "channel_normalizations")  # lazy: sampling the intensities
    spy(lazy_layer, "restore_dask")  # lazy: planning the graph
    from napari_memnet.models import files

    spy(files, "load_model")  # the Engine loads its model through files.load_model
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([crop, crop[::-1]]), name="stack")
    widget = open_widget(viewer)
    assert widget.run_blocking(timeout=60) is not None  # the current plane of a numpy stack
    viewer.add_image(da.from_array((np.stack([crop, crop.T]) * 900).astype(np.uint16), chunks=(1, 32, 32)),
                     name="lazy")
    widget.stack_mode.value = "whole stack"
    assert widget.run_blocking(timeout=60) is not None  # a dask stack: a lazy result
    expected = {"take_plane", "check_image", "load_model", "model_spec", "channel_normalizations", "restore_dask"}
    assert expected <= set(threads), threads
    main = threading.main_thread()
    assert all(main not in seen for seen in threads.values()), threads


def test_self_ensemble_choice(make_napari_viewer, tiny_models, crop):
    """Off by default; x4 restores as ``restore(..., ensemble=4)`` does and the layer's metadata says so."""
    viewer = make_napari_viewer()
    viewer.add_image(crop, name="photo")
    widget = open_widget(viewer)
    assert widget.ensemble.value == 1 and shown(widget.ensemble)
    plain = widget.run_blocking(timeout=60)
    assert "ensemble" not in plain.metadata["napari_memnet"]
    widget.ensemble.value = 4
    result = widget.run_blocking(timeout=60)
    assert result is not plain and result.metadata["napari_memnet"]["ensemble"] == 4
    expected = restore(crop, "denoise", model="tiny-denoise", ensemble=4)
    np.testing.assert_allclose(result.data, expected, atol=1e-5)
    assert np.abs(result.data - plain.data).max() > 1e-4
