"""The Train widget's "noisy ... only (self-supervised)" sources in a real napari viewer (pytest-qt, Xvfb).

Real widget, worker thread, engine and model files; the data are a crop of a real photograph (Set12)
recorded by the camera model (uint16 Poisson-Gaussian counts); a few steps."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
torch = pytest.importorskip("torch")

from napari_memnet import list_models, load_model  # noqa: E402
from napari_memnet._widgets import train_data as td  # noqa: E402
from napari_memnet._widgets.train_plot import SELF_SUPERVISED_TITLE  # noqa: E402
from napari_memnet.core.camera import poisson_gaussian  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def counts(shared_data):
    """A 96x112 crop of Set12 image 05 as a camera records it at a peak of 20 photons (uint16)."""
    from PIL import Image

    with Image.open(shared_data / "test" / "Set12" / "05.png") as im:
        img = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    return poisson_gaussian(img[80:176, 64:176], 20.0, 2.0, 100.0, rng=0)


def open_widget(viewer):
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-memnet", "Train (MemNet)")
    return widget


def test_noisy_layer_fine_tunes_the_default_denoiser_with_live_self_supervised_validation(make_napari_viewer, counts):
    from napari_memnet.training.events import Finished, Validation
    from napari_memnet.training.self_supervised import default_base_model

    viewer = make_napari_viewer()
    layer = viewer.add_image(counts, name="cells")
    before = counts.copy()
    widget = open_widget(viewer)
    widget.source.value = td.SOURCE_NOISY_LAYERS
    # noisy images alone: the bundled CPU default denoiser is the base; the layer list takes noisy layers
    assert widget.base_model.value == default_base_model()
    assert widget.clean_layers.label == "noisy layers" and not widget.levels.visible
    widget.clean_layers.value = [layer]
    assert widget.validation.value == td.VAL_REGION
    widget.steps.value, widget.patch_size.value, widget.batch_size.value = 4, 24, 2
    widget.validate_every.value = 2
    widget.model_name.value = "cells-n2n"
    outcome = widget.run_blocking(timeout=300)
    assert outcome is not None and outcome.error is None, outcome
    assert isinstance(outcome.finished, Finished) and outcome.finished.step == 4
    vals = [e for e in widget.events if isinstance(e, Validation)]
    assert [v.step for v in vals] == [0, 2, 4] and all(v.self_supervised_loss > 0 for v in vals)
    # the live plot: the self-supervised validation loss beside the training loss, its dB form below
    assert widget.loss_plot.series("validation (self-supervised)") == [(float(v.step), v.self_supervised_loss)
                                                                        for v in vals]
    assert widget.psnr_plot.title == SELF_SUPERVISED_TITLE
    assert widget.psnr_plot.series("model") == [(float(v.step), v.psnr) for v in vals]
    # the preview: the final model on the held-out region (last 22 of 112 columns; centre 20 kept)
    preview = viewer.layers["MemNet training preview"]
    assert preview.metadata["napari_memnet"]["preview_step"] == 4
    model = load_model("cells-n2n")
    region = td.map_image(counts)[:, 90:][:, 1:21]
    assert preview.data.shape == region.shape == (96, 20)
    with torch.no_grad():
        expected = model.network.eval()(torch.from_numpy(np.ascontiguousarray(region))[None, None])[0, 0].numpy()
    np.testing.assert_allclose(preview.data, expected, atol=1e-4)
    card = model.card
    assert card["base_model"] == default_base_model() and card["training"]["data"]["source"] == "noisy"
    assert "'cells'" in card["training"]["data"]["description"]
    assert "cells-n2n" in [m.name for m in list_models("denoise")]
    np.testing.assert_array_equal(layer.data, before)  # input untouched
    assert "self-supervised validation (vs noisy targets)" in widget.status.value


def test_noisy_folder_check_and_bad_noisy_layers(make_napari_viewer, counts, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    folder = tmp_path / "noisy"
    folder.mkdir()
    for i in range(3):
        tifffile.imwrite(folder / f"cell{i}.tif", np.roll(counts, 7 * i, axis=1))
    widget.source.value = td.SOURCE_NOISY_FOLDER
    assert widget.validation.value == td.VAL_FRACTION and widget.clean_dir.label == "noisy folder"
    widget.clean_dir.value = folder
    widget.val_fraction.value = 0.3
    widget.check_data()
    widget.wait(timeout=60)
    assert "Data OK: 2 training image(s), 1 validation item(s)" in widget.data_message.value

    # a constant layer and one with NaN: refused by layer name before any step, nothing saved
    flat = viewer.add_image(np.full((64, 64), 0.5, np.float32), name="flat")
    bad = counts.astype(np.float32)
    bad[3, 4] = np.nan
    with_nan = viewer.add_image(bad, name="with NaN")
    widget.source.value = td.SOURCE_NOISY_LAYERS
    widget.base_model.value = "__from_scratch__"
    widget.blocks.value, widget.recursions.value, widget.channels.value = 1, 1, 8
    widget.clean_layers.value = [flat, with_nan]
    widget.validation.value = td.VAL_NONE
    widget.model_name.value = "never-saved"
    outcome = widget.run_blocking(timeout=60)
    message = widget.data_message.value
    assert outcome.refused and "2 problems" in message
    assert "'flat': a constant image (every pixel 0.5): there is no noise to learn from" in message
    assert "'with NaN': contains non-finite values" in message
    assert "never-saved" not in [m.name for m in list_models()]
