"""A lazy result layer for a dask-backed (or zarr-backed) napari image layer.

``add_lazy_result(viewer, layer, task, ...)`` adds a layer whose data is the
dask array from ``napari_memnet.lazy.restore_dask``: napari asks only for the
plane (and, in 2-D, the region) on screen, so only those blocks are restored;
computed blocks stay in ``lazy.block_cache`` (an LRU bounded in bytes), so
going back to a plane is free. Contrast limits are fixed up front, so napari
never computes the whole array to find them. An explicit whole-stack run with
progress and cancel is ``lazy.compute_iter(layer.data, cancel=event)``.
"""

from __future__ import annotations

from .. import lazy
from . import layer_io


def is_lazy_layer_data(data) -> bool:
    """True when a layer's data is a dask or zarr array (or a multiscale list of them)."""
    if isinstance(data, (list, tuple)) or type(data).__name__ == "MultiScaleData":
        data = data[0]
    return lazy.is_dask_array(data) or type(data).__module__.startswith("zarr")


def lazy_result_for_layer(layer, task: str, **options):
    """``(dask_result, layer_kwargs)`` for restoring ``layer`` lazily.

    ``options`` go to ``lazy.restore_dask`` (model, scale, device, chunks...)."""
    options.setdefault("axes", layer_io.layer_axes(layer))
    result = lazy.lazy_result_layer_data(layer.data, task, **options)
    _, kwargs = layer_io.result_layer_kwargs(layer, result, task=task, scale=options.get("scale"),
                                             extra_metadata={"lazy": True})
    if "contrast_limits" not in kwargs and not getattr(layer, "rgb", False):
        kwargs["contrast_limits"] = lazy.lazy_result_layer_kwargs(result, name=kwargs["name"])["contrast_limits"]
    return result, kwargs


def add_lazy_result(viewer, layer, task: str, **options):
    """Add the lazy result layer of ``layer`` to ``viewer`` and return it."""
    result, kwargs = lazy_result_for_layer(layer, task, **options)
    # Created hidden: a new layer slices itself at index 0 before it knows the
    # viewer's current plane; shown once added, it slices only the viewed plane.
    visible = kwargs.pop("visible", True)
    new_layer = viewer.add_image(result, visible=False, **kwargs)
    new_layer.visible = visible
    return new_layer
