"""The deblur path through the napari widgets (a real viewer, pytest-qt under Xvfb): the blurred
sample, the Restore widget's message when no deblurring model is installed, a tiny MHNet trained from
scratch on the sample's clean layer by the Train widget, then the blurred layer restored with it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_memnet import list_models, restore  # noqa: E402
from napari_memnet._widgets import train_data as td  # noqa: E402
from napari_memnet._widgets.train_settings import config_kwargs  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _only_user_models(monkeypatch, tmp_path):
    """Hide the bundled weights (mhnet-deblur among them) so the test starts with no deblurring model."""
    import napari_memnet.models.files as modelfile

    empty = tmp_path / "no-bundled-weights"
    empty.mkdir()
    monkeypatch.setattr(modelfile, "BUNDLED_DIR", empty)


def test_architecture_choice_gives_the_engine_an_mhnet():
    request = td.DataRequest(td.SOURCE_CLEAN_FOLDER, clean="x", val_fraction=0.2)
    kwargs = config_kwargs(request, task="deblur", name="m", base=None, steps=10, patch_size=24, batch_size=4,
                           levels_text="0.5, 2", architecture="mhnet",
                           arch={"blocks": 4, "recursions": 4, "channels": 8, "unshuffle": 2}, out_dir="o")
    assert kwargs["architecture"] == "mhnet" and kwargs["arch"] == {"channels": 8}  # M, R and s are MemNet's
    assert kwargs["levels"] == (0.5, 2.0)


def test_deblur_sample_train_an_mhnet_and_restore(make_napari_viewer):
    from napari_memnet._widgets.restore_widget import RestoreWidget
    from napari_memnet._widgets.train_widget import TrainWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-memnet", "blurry")
    blurred = viewer.layers["astronaut blurred"]
    _dock, restore_widget = viewer.window.add_plugin_dock_widget("napari-memnet", "Restore (MemNet)")
    assert isinstance(restore_widget, RestoreWidget)
    restore_widget.task.value = "deblur"
    assert not restore_widget.model_message.native.isHidden()
    assert "memnet train --task deblur" in restore_widget.model_message.value
    assert restore_widget.run() is None  # refused with the message, nothing computed

    _dock, train = viewer.window.add_plugin_dock_widget("napari-memnet", "Train (MemNet)")
    assert isinstance(train, TrainWidget)
    train.source.value = td.SOURCE_CLEAN_LAYERS
    train.clean_layers.value = [viewer.layers["astronaut (clean reference)"]]
    train.validation.value = td.VAL_REGION
    train.task.value = "deblur"
    assert train.levels.value == td.DEFAULT_LEVEL_TEXT["deblur"]
    train.levels.value = "0.5, 2"
    train.base_model.value = "__from_scratch__"
    train.architecture.value = "mhnet"
    assert train.blocks.native.isHidden() and train.unshuffle.native.isHidden()
    train.channels.value = 8
    train.steps.value, train.patch_size.value, train.batch_size.value = 2, 24, 4
    train.validate_every.value = 2
    train.model_name.value = "tiny-deblur"
    outcome = train.run_blocking(timeout=180)
    assert outcome is not None and outcome.error is None and outcome.finished.step == 2
    info = {m.name: m for m in list_models("deblur")}["tiny-deblur"]
    assert info.architecture == "mhnet" and info.card["config"]["channels"] == 8
    assert info.card["levels"] == {"psf_width_range": [0.5, 2.0]}

    restore_widget.refresh_models()
    assert restore_widget.model.value == "tiny-deblur" and restore_widget.model_message.native.isHidden()
    viewer.layers.selection.active = blurred
    restore_widget.image.value = blurred
    result = restore_widget.run_blocking(timeout=120)
    assert result is not None and result.name == "astronaut blurred [deblurred]"
    expected = restore(blurred.data, "deblur", model="tiny-deblur")
    np.testing.assert_allclose(result.data, expected, atol=1e-5)
