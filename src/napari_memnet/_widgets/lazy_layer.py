"""A lazy result layer for a dask-backed (or zarr-backed) napari image layer.

``add_lazy_result(viewer, layer, task, ...)`` adds a layer whose data is the
dask array from ``restoration.lazy.graph.restore_dask``. napari asks only for
the plane (and, in 2-D, the region) on screen, so only those blocks are
restored. Computed blocks stay in ``restoration.cache.BLOCKS`` (an LRU bounded
in bytes), so going back to a plane costs nothing. Contrast limits are fixed
up front, so napari never computes the whole array to find them. An explicit
whole-stack run with progress and cancel is ``graph.restore_dask_iter(data,
task, cancel=event, ...)``, which yields the same events as ``restore_iter``.

No Qt here; ``add_lazy_result`` only calls ``viewer.add_image``.
"""

from __future__ import annotations

import numpy as np

from ..restoration.lazy.graph import plan_of, restore_dask
from . import layer_io


def lazy_result_layer_data(layer_data, task: str, **options):
    """The data of a lazy result layer for a dask/zarr layer's data: a dask
    array that restores (and caches) only the blocks a view asks for.
    ``options`` are those of ``restore_dask``. A multiscale layer's
    full-resolution level is used."""
    if isinstance(layer_data, (list, tuple)) or type(layer_data).__name__ == "MultiScaleData":
        layer_data = layer_data[0]
    options.setdefault("cache", True)
    return restore_dask(layer_data, task, **options)


def lazy_contrast_limits(result) -> tuple[float, float]:
    """Limits napari can use without computing anything: 0..255 for uint8,
    else the range of the global intensity map(s) of the restoration."""
    if np.dtype(result.dtype) == np.uint8:
        return (0.0, 255.0)
    plan = plan_of(result)
    if plan is None:
        return (0.0, 1.0)
    return (min(n.low for n in plan.norms), max(n.high for n in plan.norms))


def lazy_layer_kwargs(layer, result, task: str, scale=None) -> dict:
    """The ``viewer.add_image`` keyword arguments of ``layer``'s lazy ``result`` (reads no pixels)."""
    _, kwargs = layer_io.result_layer_kwargs(layer, result, task=task, scale=scale, extra_metadata={"lazy": True})
    if "contrast_limits" not in kwargs and not getattr(layer, "rgb", False):
        kwargs["contrast_limits"] = lazy_contrast_limits(result)
    return kwargs


def lazy_result_for_layer(layer, task: str, **options):
    """``(dask_result, layer_kwargs)`` for restoring ``layer`` lazily.

    ``options`` go to ``restore_dask`` (model, scale, device, tile_size,
    chunks...); ``axes`` defaults to the layer's (``layer_io.layer_axes``).
    This plans the graph, loads the model and samples intensities: call it
    off the main thread in a widget (the Restore widget's worker does)."""
    options.setdefault("axes", layer_io.layer_axes(layer))
    result = lazy_result_layer_data(layer.data, task, **options)
    return result, lazy_layer_kwargs(layer, result, task, options.get("scale"))


def add_lazy_result(viewer, layer, task: str, **options):
    """Add the lazy result layer of ``layer`` to ``viewer`` and return it."""
    result, kwargs = lazy_result_for_layer(layer, task, **options)
    # Created hidden: a new layer slices itself at index 0 before it knows the
    # viewer's current plane; shown once added, it slices only the viewed plane.
    visible = kwargs.pop("visible", True)
    new_layer = viewer.add_image(result, visible=False, **kwargs)
    new_layer.visible = visible
    return new_layer
