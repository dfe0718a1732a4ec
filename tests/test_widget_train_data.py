"""The Train widget's data side (a real napari viewer for the worker test, pytest-qt under Xvfb):
layers and regions to the engine's data (intensity maps, the pair rule, the held-out region), the
worker that reads them, the widget's level parsing and messages, and its controller without Qt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("torch")

from _train_widget import noisy_pair, open_widget, photo, tiny_settings  # noqa: E402,F401  (photo: a fixture)
from napari_memnet._widgets import train_data as td  # noqa: E402

pytestmark = pytest.mark.gui


def test_region_split_and_messages_without_qt():
    lr = np.zeros((40, 50), np.float32)
    hr = np.zeros((80, 100), np.float32)
    train, val, offset, axis = td.split_region(hr, 0.2, unit=2)
    assert axis == 1 and offset == (0, 80) and train.shape == (80, 80) and val.shape == (80, 20)
    assert td._sr_scale(lr, hr) == 2 and td._sr_scale(hr, hr) == 1
    assert td.parse_levels("5, 50", "denoise") == (5.0, 50.0)
    assert td.parse_levels("2 3 4", "sr") == (2, 3, 4)
    with pytest.raises(ValueError, match="whole numbers"):
        td.parse_levels("2.5", "sr")
    # the engine names arrays as the widget tells it (layer names), no rewriting of its messages
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.data import prepare_data

    config = TrainConfig(task="denoise", levels=(25, 25), patch_size=24, val_count=0)
    nan = np.full((30, 30), np.nan, np.float32)
    with pytest.raises(ValueError) as err:
        prepare_data(config, clean=[np.zeros((30, 30), np.float32), np.zeros((8, 8), np.float32)],
                     validation=[nan], intensity="as-is", names=["'c'", "'d'"],
                     val_names=["validation region of 'c'"])
    message = str(err.value)
    assert "'d': 8x8 pixels is smaller" in message and "validation region of 'c': contains non-finite" in message
    assert "image[" not in message
    with pytest.raises(ValueError, match="layer sources"):
        td.from_clean_folder(Path(__file__).parent, td.VAL_REGION, 0.2)


def test_layer_intensities_follow_restore_mapping(photo):
    """uint16 layers: the pair is mapped by the degraded layer's percentiles, as Restore maps its input."""
    from napari.layers import Image

    from napari_memnet.core.intensity import choose_intensity

    noisy, clean = noisy_pair(photo)
    deg16 = (noisy * 4000 + 300).astype(np.uint16)
    cln16 = (clean * 4000 + 300).astype(np.uint16)
    req = td.from_layer_pairs([(Image(deg16, name="d16"), Image(cln16, name="c16"))], "denoise", td.VAL_NONE, 0.2)
    assert req.pairs is None  # the main thread reads no pixels: the worker does (materialize)
    td.materialize(req)
    imap = choose_intensity(deg16)
    assert imap.mode == "percentile"
    np.testing.assert_array_equal(req.pairs[0][0], imap.forward(deg16))
    np.testing.assert_array_equal(req.pairs[0][1], imap.forward(cln16))
    assert "'d16' is neither 8-bit nor 0..1" in req.notes[0]
    # 8-bit and 0..1 data keep the engine's own scale (x / 255, or as is)
    req8 = td.materialize(td.from_layer_pairs(
        [(Image((noisy * 255).astype(np.uint8), name="d8"), Image(clean, name="c"))], "denoise", td.VAL_NONE, 0.2))
    np.testing.assert_allclose(req8.pairs[0][0], (noisy * 255).astype(np.uint8) / 255.0, atol=1e-7)
    assert not req8.notes


def test_layer_pairs_use_the_engines_pair_rule(photo):
    """An 8-bit degraded layer beside a clean layer without that fixed scale: once handed over raw
    (a float clean layer trained 300x too bright, a uint16 one divided by 65535), now one scale or refused."""
    from napari.layers import Image

    from napari_memnet.training.config import TrainConfig

    noisy, clean = noisy_pair(photo)
    d8 = np.round(noisy * 255).astype(np.uint8)
    with pytest.raises(ValueError) as err:  # a float clean layer on 0..300: refused, naming the layers
        td.materialize(td.from_layer_pairs([(Image(d8, name="d8"), Image(clean * 300, name="c300"))], "denoise",
                                           td.VAL_NONE, 0.2))
    msg = str(err.value)
    assert "'d8' \u2192 'c300': the degraded image is uint8 on the 8-bit (0..255) scale" in msg
    assert "float32 with values" in msg
    # uint16 layers, the degraded one within 0..255 (8-bit to restore), the clean one a little over:
    # the clean layer takes the degraded layer's map (x / 255), and the engine keeps it as it is
    d16 = d8.astype(np.uint16)
    c16 = np.round(clean * 300).astype(np.uint16)
    req = td.materialize(td.from_layer_pairs([(Image(d16, name="d16"), Image(c16, name="c16"))], "denoise",
                                             td.VAL_NONE, 0.2))
    assert req.intensity == "as-is"
    np.testing.assert_array_equal(req.pairs[0][0], d16.astype(np.float32) / 255)
    np.testing.assert_array_equal(req.pairs[0][1], c16.astype(np.float32) / 255)
    config = TrainConfig(task="denoise", levels=(25, 25), patch_size=24, val_count=0)
    (item,) = td.check_request(req, config).train
    np.testing.assert_array_equal(item.input, req.pairs[0][0])
    np.testing.assert_array_equal(item.target, req.pairs[0][1])


def test_held_out_region_shares_its_layers_map(photo):
    """A uint16 pair is mapped whole by the degraded layer's percentiles, then split: the training part
    and the held-out region reach the engine on that one map (not re-mapped by their own percentiles)."""
    from napari.layers import Image

    from napari_memnet.core.intensity import choose_intensity
    from napari_memnet.training.config import TrainConfig

    noisy = photo + np.random.default_rng(3).normal(0, 0.08, photo.shape)  # unclipped, as a camera records
    deg16 = np.round(noisy * 3000 + 500).astype(np.uint16)
    cln16 = np.round(photo * 3000 + 500).astype(np.uint16)
    req = td.materialize(td.from_layer_pairs([(Image(deg16, name="d"), Image(cln16, name="c"))], "denoise",
                                             td.VAL_REGION, 0.25))
    imap = choose_intensity(deg16)
    assert imap.mode == "percentile"
    whole_in, whole_tg = imap.forward(deg16), imap.forward(cln16)
    cut = req.pairs[0][0].shape[1]  # 96x112: the longer axis (x) is split
    assert req.validation[0][0].shape[1] == 112 - cut
    config = TrainConfig(task="denoise", levels=(25, 25), patch_size=24, val_crop=0)
    data = td.check_request(req, config)
    (item,), (val,) = data.train, data.val
    np.testing.assert_array_equal(item.input, whole_in[:, :cut])
    np.testing.assert_array_equal(item.target, whole_tg[:, :cut])
    np.testing.assert_array_equal(val.input, whole_in[:, cut:])
    np.testing.assert_array_equal(val.target, whole_tg[:, cut:])
    assert choose_intensity(deg16[:, cut:]) != imap  # the region's own percentiles would differ


def test_layers_are_read_mapped_and_split_in_the_worker(make_napari_viewer, photo, thread_spy):
    """Check data / Start: the main thread only points at the layers' planes; the worker reads
    them, maps their intensities and splits off the held-out region."""
    import threading

    spy, threads = thread_spy, thread_spy.threads
    for name in ("map_pair", "map_image", "split_region"):
        spy(td, name)
    spy(td.LayerPlane, "read")
    viewer = make_napari_viewer()
    noisy, clean = noisy_pair(photo)
    viewer.add_image((clean * 3000).astype(np.uint16), name="clean")
    viewer.add_image((noisy * 3000).astype(np.uint16), name="noisy")
    widget = open_widget(viewer)
    tiny_settings(widget, name="never-saved")
    widget.validation.value = td.VAL_REGION
    assert widget.check_data() is not None
    widget.wait(timeout=60)
    assert "Data OK" in widget.data_message.value, widget.data_message.value
    assert {"read", "map_pair", "split_region"} <= set(threads), threads
    main = threading.main_thread()
    assert all(main not in seen for seen in threads.values()), threads


def test_train_controller_without_qt(tmp_path):
    """What Start runs and what its events say, decided without Qt or napari."""
    from napari_memnet._widgets.train_controller import TrainController
    from napari_memnet.training.events import Step

    controller = TrainController()
    with pytest.raises(ValueError, match="bundled model"):
        controller.training_run(resume=False, name="memnet-denoise", steps=4, make_request=lambda: "request",
                                make_kwargs=lambda request: {"name": "memnet-denoise"})
    assert controller.stop_event is None  # refused: nothing armed
    request, kwargs = controller.training_run(
        resume=False, name="fresh", steps=4, make_request=lambda: "request",
        make_kwargs=lambda request: {"name": "fresh", "steps": 4, "out_dir": str(tmp_path / "runs" / "fresh")})
    assert request == "request" and controller.can_stop()
    again, kwargs = controller.training_run(resume=True, name="fresh", steps=9, make_request=None, make_kwargs=None)
    assert again == "request" and kwargs["steps"] == 9  # Resume reuses the request of the same run
    assert "step 2/4" in controller.event_text(Step(2, 4, loss=0.5, eta_s=3.0))
    assert controller.stop() and not controller.can_stop()
    controller.end()
    assert not controller.stop() and len(controller.events) == 1
