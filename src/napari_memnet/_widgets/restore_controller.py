"""The Restore widget without Qt: what a click asks for, and the work a worker does.

``RestoreController.request(...)`` turns the form's values into a
``RestoreRequest`` with checks that read no pixels (the layer's kind, dtype
and shape, the model choice, the plane on screen). ``restore_job(request,
cancel)`` is the worker thread's body: it reads the plane or the stack,
restores it (``api.restore_iter``, whose input checks scan for NaN/inf) and
yields the engine's ``TileProgress`` events; for a dask- or zarr-backed layer
restored whole it plans the lazy result (``lazy_layer``: the model is loaded
and hashed, the intensity sampled) instead. Either way it returns a
``RunOutcome``; the form turns it into a layer on the main thread. So the
napari main thread never scans, plans or loads a model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..restoration.ensemble import check_ensemble
from . import layer_io

NO_MODEL = "__no_model__"


@dataclass
class RunOutcome:
    """What a finished worker returns to the main thread."""

    data: np.ndarray | None = None
    cancelled: bool = False
    error: str | None = None
    seconds: float = 0.0
    lazy: bool = False  # ``data`` is a lazy dask result (restored as napari views it)


@dataclass
class RestoreRequest:
    """One run: the layer, the task and the engine options; ``index`` is the plane (None: whole)."""

    layer: object
    task: str
    options: dict = field(default_factory=dict)
    index: tuple | None = None
    lazy: bool = False
    replace: bool = False


def restore_job(request: RestoreRequest, cancel: threading.Event):
    """Worker body (runs off the main thread): yield progress, return a ``RunOutcome``."""
    from ..api import restore_iter
    from ..restoration.events import Cancelled

    start = time.perf_counter()
    layer, task, options = request.layer, request.task, dict(request.options)
    try:
        if request.lazy:
            from .lazy_layer import lazy_result_layer_data

            data = lazy_result_layer_data(layer.data, task, **options)
            return RunOutcome(data=data, lazy=True, seconds=time.perf_counter() - start)
        image = (layer_io.take_plane(layer, request.index) if request.index is not None
                 else np.asarray(layer.data))
        result = None
        for event in restore_iter(image, task, cancel=cancel, **options):
            if hasattr(event, "data"):
                result = event.data
            else:
                yield event
    except Cancelled:
        return RunOutcome(cancelled=True, seconds=time.perf_counter() - start)
    except ValueError as exc:  # bad input or unusable model file: a message, not a traceback
        return RunOutcome(error=f"{layer.name!r}: {exc}", seconds=time.perf_counter() - start)
    if result is None:
        return RunOutcome(error="the restoration engine returned no result")
    return RunOutcome(data=np.asarray(result), seconds=time.perf_counter() - start)


class RestoreController:
    """The state of the Restore widget's runs, without Qt (the form owns the widgets and the worker)."""

    def __init__(self):
        self.cancel_event: threading.Event | None = None
        self.request_running: RestoreRequest | None = None

    @staticmethod
    def request(layer, *, task: str, model, scale, device: str, tile_size: int, whole_stack: bool,
                world_point, replace: bool, camera: bool = False, ensemble: int = 1) -> RestoreRequest:
        """The run the form asks for; ``ValueError`` with a user-facing message if it cannot run.
        ``camera``: denoise camera counts behind the variance-stabilising transform (gray layers).
        ``ensemble``: average the model over that many rotated and flipped copies (1 = off)."""
        layer_io.validate_image_layer(layer)
        if model in (None, NO_MODEL):
            label = layer_io.TASK_LABELS.get(task, task)
            raise ValueError(f"No MemNet model for {label}: fine-tune one or install the bundled "
                             "weights, then press \u21bb to refresh the model list.")
        options = {"scale": int(scale) if task == "sr" else None, "model": model, "device": device,
                   "tile_size": int(tile_size) or None}
        if check_ensemble(ensemble) > 1:
            options["ensemble"] = int(ensemble)
        whole = layer_io.n_stack_axes(layer) == 0 or whole_stack
        if camera:
            if task != "denoise" or layer.rgb:
                raise ValueError("camera noise applies to denoising gray layers (not RGB)")
            if whole and layer_io.is_lazy_array(layer.data):
                raise ValueError("camera noise needs the planes in memory: restore the current plane, or a "
                                 "whole dask/zarr stack without camera noise")
            options["camera"] = True
        if whole:
            options["axes"] = layer_io.layer_axes(layer)
            return RestoreRequest(layer, task, options, None, layer_io.is_lazy_array(layer.data), replace)
        options["axes"] = layer_io.layer_axes(layer, plane_only=True)
        return RestoreRequest(layer, task, options, layer_io.plane_index(layer, world_point), False, replace)

    def begin(self, request: RestoreRequest) -> tuple:
        """Arguments of ``restore_job`` for a new run."""
        self.cancel_event = threading.Event()
        self.request_running = request
        return request, self.cancel_event

    def cancel(self) -> bool:
        """Ask the running job to stop after the current tile; False when none runs."""
        if self.cancel_event is None:
            return False
        self.cancel_event.set()
        return True

    def end(self) -> None:
        self.cancel_event = None
