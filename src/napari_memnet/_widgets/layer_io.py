"""Helpers between napari image layers and the arrays the restoration engine takes.

No Qt here: these functions only read layer attributes and build the keyword
arguments of the result layer, so they are easy to test and reuse.

Conventions
-----------
* ``axes`` strings describe an array for ``napari_memnet.restore``: the last two
  spatial axes are ``"YX"``, RGB(A) layers end with ``"C"``, and leading (stack)
  axes are named from ``"TZ"`` outwards (``"ZYX"``, ``"TZYX"``, ``"QTZYX"``).
* A super-resolution result is ``factor`` times larger in Y and X, so its layer
  scale is the input's divided by ``factor`` and its translate moves by
  ``-scale * (factor - 1) / (2 * factor)``: output pixel ``j`` is centred on input
  position ``(j + 0.5) / factor - 0.5`` (the bicubic/MATLAB pixel-centre
  convention), so the result overlays the input in world coordinates.
* A "current plane" result keeps the layer's number of dimensions with every
  stack axis of length 1, translated to the plane's position, so it is shown
  exactly on that plane and nowhere else.
"""

from __future__ import annotations

import numpy as np

from ..core.tasks import TASKS, get_task

TASK_LABELS = {name: task.label for name, task in TASKS.items()}  # read from the task registry
_LEADING_NAMES = "ZTQRSUVW"  # innermost first: ZYX, TZYX, QTZYX, ...


def operation_suffix(task: str, scale: int | None = None) -> str:
    """The bracketed part of a result layer's name: ``denoised``, ``SR x2``, ``deblocked``."""
    suffix = get_task(task).result_suffix
    return suffix.format(scale=int(scale)) if "{scale}" in suffix else suffix


def result_name(input_name: str, task: str, scale: int | None = None) -> str:
    """``"cells [denoised]"``, ``"cells [SR x2]"``, ``"cells [deblocked]"``."""
    return f"{input_name} [{operation_suffix(task, scale)}]"


def n_stack_axes(layer) -> int:
    """Number of leading (non-Y/X, non-channel) axes of an image layer."""
    return int(layer.ndim) - 2


def layer_axes(layer, *, plane_only: bool = False) -> str:
    """The axes string of ``layer.data`` (or of one of its planes)."""
    lead = 0 if plane_only else n_stack_axes(layer)
    if lead > len(_LEADING_NAMES):
        raise ValueError(f"layer {layer.name!r} has {layer.ndim} dimensions; at most "
                         f"{len(_LEADING_NAMES) + 2} are supported")
    leading = _LEADING_NAMES[:lead][::-1] if lead > 2 else "TZ"[2 - lead:]
    return leading + "YX" + ("C" if getattr(layer, "rgb", False) else "")


def validate_image_layer(layer) -> None:
    """Raise ``ValueError`` with a user-facing message if the layer cannot be restored."""
    from napari.layers import Image

    if layer is None:
        raise ValueError("No image layer selected: open or select an image layer first.")
    if not isinstance(layer, Image):  # (napari hands plugins proxies: use __class__)
        raise ValueError(
            f"Restore (MemNet) works on image layers; {layer.name!r} is a "
            f"{layer.__class__.__name__} layer. Select an image layer."
        )
    if getattr(layer, "multiscale", False):
        raise ValueError(f"{layer.name!r} is a multiscale (pyramid) image; restore one level "
                         "as a separate image layer instead.")
    dtype = np.dtype(layer.dtype)
    if dtype.kind not in "uif":
        raise ValueError(f"{layer.name!r} has data type {dtype}; expected integer or float intensities.")
    shape = layer.data.shape
    spatial = shape[-3:-1] if layer.rgb else shape[-2:]
    if len(spatial) < 2 or min(spatial) < 2:
        raise ValueError(
            f"{layer.name!r} is {'x'.join(map(str, spatial))} pixels; an image of at least "
            "2x2 pixels is needed."
        )
    if layer.rgb and shape[-1] not in (3, 4):
        raise ValueError(f"{layer.name!r} is an RGB layer with {shape[-1]} channels; expected 3 or 4.")


def is_lazy_array(data) -> bool:
    """True for dask or zarr arrays (restored lazily instead of loaded whole)."""
    module = type(data).__module__ or ""
    return module.startswith(("dask", "zarr"))


def plane_index(layer, world_point) -> tuple[int, ...]:
    """Indices along the stack axes of ``layer`` of the plane shown at ``world_point``."""
    lead = n_stack_axes(layer)
    if lead == 0:
        return ()
    coords = np.asarray(layer.world_to_data(np.asarray(world_point, dtype=float)), dtype=float)
    shape = layer.data.shape
    idx = []
    for axis in range(lead):
        i = int(np.round(coords[axis]))
        idx.append(int(np.clip(i, 0, shape[axis] - 1)))
    return tuple(idx)


def take_plane(layer, index: tuple[int, ...]) -> np.ndarray:
    """The 2-D (or 2-D + channel) plane of ``layer.data`` at stack ``index`` (in memory)."""
    return np.asarray(layer.data[tuple(index)])


def _same_limits(in_dtype, out_dtype) -> bool:
    in_dtype, out_dtype = np.dtype(in_dtype), np.dtype(out_dtype)
    return in_dtype == out_dtype or (in_dtype.kind == "f" and out_dtype.kind == "f")


def run_metadata(options: dict) -> dict:
    """What a result layer's metadata records of the run's options: the model, and the ensemble when on."""
    return {"model": options["model"], **({"ensemble": options["ensemble"]} if "ensemble" in options else {})}


def result_layer_kwargs(layer, data: np.ndarray, *, task: str, scale: int | None = None,
                        index: tuple[int, ...] | None = None, extra_metadata: dict | None = None,
                        ) -> tuple[np.ndarray, dict]:
    """Shape the engine's output for napari and build the new layer's keyword arguments.

    ``index`` is the stack position of a single-plane result (``None`` for a whole
    stack or a 2-D layer). Returns ``(data, kwargs)`` for ``viewer.add_image``.
    """
    lead = n_stack_axes(layer)
    factor = int(scale) if task == "sr" else 1
    in_scale = np.asarray(layer.scale, dtype=float)
    in_translate = np.asarray(layer.translate, dtype=float)
    out_scale = in_scale.copy()
    out_translate = in_translate.copy()
    out_scale[-2:] = in_scale[-2:] / factor
    out_translate[-2:] = in_translate[-2:] - in_scale[-2:] * (factor - 1) / (2.0 * factor)
    if index is not None and lead:
        data = data.reshape((1,) * lead + tuple(data.shape))
        for axis, i in enumerate(index):
            out_translate[axis] = in_translate[axis] + i * in_scale[axis]

    metadata = dict(layer.metadata)
    metadata["napari_memnet"] = {"source_layer": layer.name, "task": task,
                                 **({"scale": factor} if task == "sr" else {}),
                                 **({"plane": list(index)} if index else {}),
                                 **(extra_metadata or {})}
    kwargs = {
        "name": result_name(layer.name, task, scale),
        "scale": tuple(out_scale),
        "translate": tuple(out_translate),
        "rotate": layer.rotate,
        "shear": layer.shear,
        "affine": layer.affine.affine_matrix,
        "metadata": metadata,
        "rgb": bool(layer.rgb),
        "units": layer.units,
        "axis_labels": layer.axis_labels,
        "blending": layer.blending,
    }
    if not layer.rgb:
        kwargs["colormap"] = layer.colormap.name
        kwargs["gamma"] = layer.gamma
        if _same_limits(layer.dtype, data.dtype):
            kwargs["contrast_limits"] = tuple(layer.contrast_limits)
    return data, kwargs


def is_memnet_result(layer) -> bool:
    """True for layers this plugin created (they carry ``metadata['napari_memnet']``)."""
    return isinstance(getattr(layer, "metadata", None), dict) and "napari_memnet" in layer.metadata


def update_layer(target, data: np.ndarray, kwargs: dict) -> None:
    """Replace a previous result layer's data and placement in place."""
    target.data = data
    for key in ("scale", "translate", "metadata"):
        setattr(target, key, kwargs[key])
    if "contrast_limits" in kwargs:
        target.contrast_limits = kwargs["contrast_limits"]
    elif not getattr(target, "rgb", False):
        target.reset_contrast_limits()
