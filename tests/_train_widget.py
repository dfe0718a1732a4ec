"""Shared by the Train widget's test files: a real photograph crop, a noisy pair of it, the widget
docked in a viewer, and the tiny-network settings that keep a run to a few seconds."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def photo(shared_data):
    """A 96x112 crop of Set12 image 05 (a real gray photograph), 0..1."""
    from PIL import Image

    with Image.open(shared_data / "test" / "Set12" / "05.png") as im:
        img = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return img[80:176, 64:176].copy()


def noisy_pair(clean, sigma=25, seed=0):
    """(noisy, clean), the noisy one clipped to 0..1 like a real 8-bit recording."""
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, sigma / 255.0, clean.shape), 0, 1).astype(np.float32), clean


def open_widget(viewer):
    from napari_memnet._widgets.train_widget import TrainWidget

    _dock, widget = viewer.window.add_plugin_dock_widget("napari-memnet", "Train (MemNet)")
    assert isinstance(widget, TrainWidget)
    return widget


def tiny_settings(widget, *, steps=4, name="tiny-ft", every=2):
    widget.base_model.value = "__from_scratch__"
    widget.blocks.value, widget.recursions.value, widget.channels.value = 2, 2, 8
    widget.steps.value = steps
    widget.patch_size.value = 24
    widget.batch_size.value = 4
    widget.validate_every.value = every
    widget.model_name.value = name
