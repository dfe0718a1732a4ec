"""The "Train (MemNet)" widget in a real napari viewer (pytest-qt under Xvfb).

Everything is real: the widget, the worker thread, the training engine, model
files. Only the network is tiny (MemNet M2R2 C8) and the runs are a few steps on
small crops of a real test image (Set12), so the whole file takes about a minute.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("napari")
torch = pytest.importorskip("torch")

from napari_memnet import list_models, load_model  # noqa: E402
from napari_memnet._widgets import train_data as td  # noqa: E402
from _train_widget import noisy_pair, open_widget, photo, tiny_settings  # noqa: E402,F401  (photo: a fixture)

pytestmark = pytest.mark.gui


def error_messages():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [str(n.message) for n in notification_manager.records if n.severity == NotificationSeverity.ERROR]


def test_fine_tune_layer_pair_live_view_saved_listed_and_restore(make_napari_viewer, photo):
    from qtpy.QtCore import QTimer

    from napari_memnet.training.events import Finished, Started, Step, Validation

    viewer = make_napari_viewer()
    noisy, clean = noisy_pair(photo)
    viewer.add_image(clean, name="clean")
    noisy_layer = viewer.add_image(noisy, name="noisy")
    before = noisy.copy()
    _dock, restore_widget = viewer.window.add_plugin_dock_widget("napari-memnet", "Restore (MemNet)")
    widget = open_widget(viewer)
    # the two layers are pre-chosen: the top one (just added) as degraded
    assert widget.degraded.value is noisy_layer and widget.clean.value is viewer.layers["clean"]
    assert widget.advanced.native.isHidden()  # advanced settings start collapsed
    tiny_settings(widget, steps=4)
    assert widget.shared_recursions.value and not widget.shared_recursions.native.isHidden()
    widget.shared_recursions.value = False  # untied recursions: each its own convs

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    t0 = time.perf_counter()
    outcome = widget.run_blocking(timeout=120)
    elapsed = time.perf_counter() - t0
    timer.stop()

    assert outcome is not None and outcome.error is None, outcome
    finished = outcome.finished
    assert isinstance(finished, Finished) and finished.step == 4 and not finished.stopped
    # the viewer kept processing events all along: the 20 ms timer fired throughout, never
    # stalling for more than a quarter of the run (a run on the main thread would stall for all of it;
    # the 1.5 s floor absorbs scheduling hiccups of a loaded 2-core machine)
    assert len(ticks) >= elapsed / 0.2
    assert max(np.diff([t0, *ticks, t0 + elapsed])) < max(1.5, 0.25 * elapsed)
    # every step reached the loss plot (total and per-branch) and the progress bar
    steps = [e for e in widget.events if isinstance(e, Step)]
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert widget.loss_plot.series("loss") == [(float(s.step), s.loss) for s in steps]
    assert [y for _x, y in widget.loss_plot.series("y2")] == [s.branch_losses[1] for s in steps]
    assert widget.progress.value == widget.progress.max == 4
    assert widget.weight_bars.weights == steps[-1].branch_weights and len(steps[-1].branch_weights) == 2
    vals = [e for e in widget.events if isinstance(e, Validation)]
    assert [v.step for v in vals] == [0, 2, 4]
    assert widget.psnr_plot.series("model") == [(float(v.step), v.psnr) for v in vals]
    assert widget.psnr_plot.hline("base model") == vals[0].psnr == finished.base_model_psnr
    assert any(isinstance(e, Started) for e in widget.events)
    # the preview layer shows the final model on the held-out region (the right 20% of the pair)
    preview = viewer.layers["MemNet training preview"]
    assert preview.metadata["napari_memnet"]["preview_step"] == 4
    model = load_model("tiny-ft")
    region = noisy[:, 90:]  # 112 columns, the last 0.2 held out from column round(0.8 * 112) = 90
    assert preview.data.shape == region.shape
    with torch.no_grad():
        expected = model.network.eval()(torch.from_numpy(region)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(preview.data, expected, atol=1e-5)
    assert preview.translate[1] == pytest.approx(90)
    # saved as a user model with a card, listed at once, also in the docked Restore widget
    assert "tiny-ft" in [m.name for m in list_models("denoise")]
    card = json.loads(model.path.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 4
    # from scratch the form builds a fast MemNet by default (space-to-depth s = 2)
    assert card["config"]["unshuffle"] == 2 and not widget.unshuffle.native.isHidden()
    assert card["config"]["shared_recursions"] is False
    assert card["training"]["validation_psnr_before"] == pytest.approx(vals[0].psnr)
    assert card["training"]["validation_psnr_after"] == pytest.approx(vals[-1].psnr)
    assert "'noisy' \u2192 'clean'" in card["training"]["data"]["description"]
    assert "tiny-ft" in restore_widget.model.choices
    assert "saved 'tiny-ft'" in widget.status.value
    np.testing.assert_array_equal(noisy_layer.data, before)  # input untouched
    # the new model is also offered as a base model for the next fine-tuning
    assert "tiny-ft" in widget.base_model.choices


def test_restore_with_it_drives_the_restore_widget(make_napari_viewer, photo):
    pytest.importorskip("napari_memnet.restoration.eager")
    from qtpy.QtWidgets import QApplication

    from napari_memnet import restore

    viewer = make_napari_viewer()
    noisy, clean = noisy_pair(photo)
    viewer.add_image(clean, name="clean")
    noisy_layer = viewer.add_image(noisy, name="noisy")
    widget = open_widget(viewer)
    tiny_settings(widget, steps=1, name="tiny-restore", every=1)
    assert not widget.restore_button.enabled
    outcome = widget.run_blocking(timeout=120)
    assert outcome.error is None and widget.restore_button.enabled
    viewer.layers.selection.active = noisy_layer
    worker = widget.restore_with_model()  # opens the Restore widget, picks the new model, runs it
    restore_widget = widget._restore_widget()
    assert worker is not None and restore_widget.model.value == "tiny-restore"
    deadline = time.perf_counter() + 60
    while restore_widget.worker is not None and time.perf_counter() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    result = restore_widget.last_result_layer
    assert result is not None and result.name == "noisy [denoised]"
    assert result.metadata["napari_memnet"]["model"] == "tiny-restore"
    np.testing.assert_allclose(result.data, restore(noisy, "denoise", model="tiny-restore"), atol=1e-5)


def test_stop_mid_run_saves_model_then_resume_continues(make_napari_viewer, photo):
    from napari_memnet.training.events import Started, Step

    viewer = make_napari_viewer()
    noisy, clean = noisy_pair(photo, seed=1)
    viewer.add_image(clean, name="clean")
    viewer.add_image(noisy, name="noisy")
    widget = open_widget(viewer)
    tiny_settings(widget, steps=200, name="tiny-stop", every=100)
    worker = widget.start()
    assert worker is not None and widget.stop_button.enabled and not widget.start_button.enabled

    def stop_after_two(event):
        if isinstance(event, Step) and event.step >= 2:
            widget.stop()

    worker.yielded.connect(stop_after_two)
    widget.wait(timeout=120)
    outcome = widget.last_outcome
    assert outcome.error is None and outcome.finished.stopped
    stopped_at = outcome.finished.step
    assert 2 <= stopped_at < 200
    assert "Stopped" in widget.status.value
    assert "tiny-stop" in [m.name for m in list_models("denoise")]  # a usable model already
    assert widget.resume_button.enabled  # the checkpoint is there
    # Start again under the same name is refused (it would clobber the run): Resume instead
    assert widget.start() is None and "press Resume" in widget.data_message.value

    widget.steps.value = stopped_at + 2
    outcome = widget.run_blocking(resume=True, timeout=120)
    assert outcome.error is None and not outcome.finished.stopped
    started = [e for e in widget.events if isinstance(e, Started)]
    assert started[0].resumed and started[0].step == stopped_at
    assert [e.step for e in widget.events if isinstance(e, Step)] == [stopped_at + 1, stopped_at + 2]
    assert widget.progress.value == stopped_at + 2
    # the resumed run kept its loss curve (no clear) and its base-model reference line
    assert len(widget.loss_plot.series("loss")) >= stopped_at + 2
    card = json.loads(load_model("tiny-stop").path.with_suffix(".json").read_text())
    assert card["training"]["steps"] == stopped_at + 2


def test_bad_data_is_refused_with_names(make_napari_viewer, photo, tmp_path):
    from PIL import Image

    viewer = make_napari_viewer()
    noisy, clean = noisy_pair(photo)
    viewer.add_image(clean[:90], name="clean")
    viewer.add_image(noisy, name="noisy")
    widget = open_widget(viewer)
    tiny_settings(widget, name="never-saved")
    outcome = widget.run_blocking(timeout=60)  # shape mismatch
    assert outcome.refused
    message = widget.data_message.value
    assert "'noisy' \u2192 'clean'" in message and "degraded image is 112x96 but clean is 112x90" in message
    assert any("Train (MemNet)" in m and "112x90" in m for m in error_messages())

    bad = noisy.copy()
    bad[5, 7] = np.nan
    viewer.add_image(bad, name="with NaN")
    widget.clear_pairs()
    widget.add_pair(viewer.layers["with NaN"], viewer.layers["noisy"])
    widget.add_pair(viewer.layers["noisy"], viewer.layers["clean"])
    widget.validation.value = td.VAL_NONE
    outcome = widget.run_blocking(timeout=60)
    message = widget.data_message.value
    assert outcome.refused and "2 problems" in message
    assert "'with NaN' \u2192 'noisy' (degraded): contains non-finite values" in message

    widget.clear_pairs()
    viewer.add_image(clean[:20, :20], name="tiny clean")
    viewer.add_image(noisy[:20, :20], name="tiny noisy")
    widget.add_pair(viewer.layers["tiny noisy"], viewer.layers["tiny clean"])
    outcome = widget.run_blocking(timeout=60)
    assert outcome.refused and "smaller than the 24x24 needed for a training patch" in widget.data_message.value

    # two folders whose names do not match
    deg, cln = tmp_path / "degraded", tmp_path / "clean"
    deg.mkdir()
    cln.mkdir()
    for folder, names in ((deg, ("a", "b")), (cln, ("a", "c"))):
        for n in names:
            Image.fromarray((clean * 255).astype(np.uint8)).save(folder / f"{n}.png")
    widget.source.value = td.SOURCE_FOLDER_PAIRS
    widget.degraded_dir.value, widget.clean_dir.value = deg, cln
    outcome = widget.run_blocking(timeout=60)
    message = widget.data_message.value
    assert outcome.refused and "b.png: no clean image" in message and "c.png: no degraded image" in message
    assert "never-saved" not in [m.name for m in list_models()]


def test_synthetic_source_check_and_sr_from_clean_layer(make_napari_viewer, photo, shared_data):
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    # a folder of clean images, held-out fraction: checked by the engine, nothing trained
    widget.source.value = td.SOURCE_CLEAN_FOLDER
    assert widget.validation.value == td.VAL_FRACTION  # region is only for layers
    widget.clean_dir.value = shared_data / "test" / "Set12"
    widget.val_fraction.value = 0.25
    widget.levels.value = "15, 30"
    worker = widget.check_data()
    widget.wait(timeout=60)
    assert worker is not None
    assert "Data OK: 9 training image(s), 6 validation item(s)" in widget.data_message.value  # 3 images x 2 levels

    # clean layer degraded on the fly for x2 super-resolution
    viewer.add_image(photo, name="photo")
    widget.source.value = td.SOURCE_CLEAN_LAYERS
    widget.clean_layers.value = [viewer.layers["photo"]]
    widget.validation.value = td.VAL_REGION
    widget.task.value = "sr"
    assert widget.levels.value == td.DEFAULT_LEVEL_TEXT["sr"]
    widget.levels.value = "2"
    tiny_settings(widget, steps=2, name="tiny-sr-ft", every=2)
    outcome = widget.run_blocking(timeout=120)
    assert outcome.error is None and outcome.finished.step == 2
    info = {m.name: m for m in list_models("sr")}["tiny-sr-ft"]
    assert info.card["levels"] == {"scales": [2]}
    assert info.card["training"]["validation_psnr_after"] is not None

def test_export_button_writes_a_bioimageio_package_in_a_worker(make_napari_viewer, photo, tmp_path):
    """After a run, "Export (bioimage.io)" writes the model as a package (off the main thread) that
    imports back as the same network."""
    pytest.importorskip("bioimageio.spec", reason="the optional 'bioimageio' extra is not installed")
    from qtpy.QtWidgets import QApplication

    from napari_memnet import import_bioimageio

    viewer = make_napari_viewer()
    noisy, clean = noisy_pair(photo)
    viewer.add_image(clean, name="clean")
    viewer.add_image(noisy, name="noisy")
    widget = open_widget(viewer)
    tiny_settings(widget, steps=1, name="tiny-export", every=1)
    assert not widget.exporter.button.enabled
    assert widget.run_blocking(timeout=120).error is None and widget.exporter.button.enabled
    worker = widget.exporter.export(tmp_path / "tiny.zip")
    assert worker is not None and not widget.exporter.button.enabled  # one export at a time
    deadline = time.perf_counter() + 180
    while widget.exporter.worker is not None and time.perf_counter() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    assert widget.exporter.last_path == str(tmp_path / "tiny.zip") and (tmp_path / "tiny.zip").stat().st_size > 0
    assert "Exported to" in widget.status.value and widget.exporter.button.enabled
    info = import_bioimageio(tmp_path / "tiny.zip", name="tiny-export-back")
    back, trained = load_model(info.name).network.state_dict(), load_model("tiny-export").network.state_dict()
    assert back.keys() == trained.keys() and all(torch.equal(back[k], trained[k]) for k in back)
