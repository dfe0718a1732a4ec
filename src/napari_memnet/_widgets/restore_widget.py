"""The "Restore (MemNet)" dock widget.

A magicgui ``Container`` whose **Restore** button starts ``napari_memnet.restoration.eager.
restore_iter`` in a napari worker thread (``napari.qt.threading.create_worker``,
what ``thread_worker`` builds on; worker exceptions reach napari's notifications). The worker never touches Qt: it
yields the engine's ``TileProgress`` events (shown on the main thread through
the worker's ``yielded`` signal) and returns an outcome that the main thread
turns into a new layer. ``Cancel`` sets a ``threading.Event`` that the engine
checks between tiles; a cancelled run adds nothing.

Scripting::

    widget = RestoreWidget(viewer)
    widget.task.value = "sr"; widget.scale.value = 2
    layer = widget.run_blocking()          # or: worker = widget.run()

Dask- or zarr-backed layers restored whole get a lazy result layer instead
(``lazy_layer``): nothing is computed until napari displays it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, Label, ProgressBar, PushButton,
                              SpinBox)
from qtpy.QtCore import QEvent, QObject

from ..core.tasks import SR_SCALES
from . import layer_io
from .progress import format_seconds, progress_text

if TYPE_CHECKING:  # pragma: no cover
    import napari

NO_MODEL = "__no_model__"
WHOLE_STACK = "whole stack"
CURRENT_PLANE = "current plane"


@dataclass
class RunOutcome:
    """What a finished worker returns to the main thread."""

    data: np.ndarray | None = None
    cancelled: bool = False
    error: str | None = None
    seconds: float = 0.0


def _restore_job(image: np.ndarray, task: str, options: dict, cancel: threading.Event):
    """Worker body (runs off the main thread): yield progress, return a ``RunOutcome``."""
    from ..restoration.events import Cancelled
    from ..api import restore_iter

    start = time.perf_counter()
    result = None
    try:
        for event in restore_iter(image, task, cancel=cancel, **options):
            if hasattr(event, "data"):
                result = event.data
            else:
                yield event
    except Cancelled:
        return RunOutcome(cancelled=True, seconds=time.perf_counter() - start)
    except ValueError as exc:  # bad input or unusable model file: a message, not a traceback
        return RunOutcome(error=str(exc), seconds=time.perf_counter() - start)
    if result is None:
        return RunOutcome(error="the restoration engine returned no result")
    return RunOutcome(data=np.asarray(result), seconds=time.perf_counter() - start)


class _ClickRefresher(QObject):
    """Calls ``callback`` just before a combo box's popup opens (mouse or keyboard)."""

    def __init__(self, callback, parent=None):
        super().__init__(parent)
        self._callback = callback

    def eventFilter(self, obj, event):  # noqa: N802 (Qt API)
        from qtpy.QtCore import Qt

        kind = event.type()
        if kind == QEvent.Type.MouseButtonPress:
            self._callback()
        elif kind == QEvent.Type.KeyPress and (
                event.key() in (Qt.Key.Key_Space, Qt.Key.Key_F4)
                or (event.key() == Qt.Key.Key_Down
                    and event.modifiers() & Qt.KeyboardModifier.AltModifier)):
            self._callback()  # the keys that open a combo box's popup
        return False


class RestoreWidget(Container):
    """Restore the selected image layer with a MemNet/RED30 model."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self._viewer = napari_viewer
        self._worker = None
        self._cancel_event: threading.Event | None = None
        self._run_context: dict | None = None
        self._adding_result = False
        self._status_for = None  # the layer the status line talks about
        self.last_result_layer = None
        self.last_outcome: RunOutcome | None = None

        self.image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self.task = ComboBox(label="task", value="denoise",
                             choices=[(label, key) for key, label in layer_io.TASK_LABELS.items()])
        self.scale = ComboBox(label="scale", choices=list(SR_SCALES), value=2, visible=False)
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.refresh_button = PushButton(text="\u21bb", tooltip="Refresh the model list")
        model_row = Container(widgets=[self.model, self.refresh_button], layout="horizontal",
                              labels=False, label="model")
        model_row.margins = (0, 0, 0, 0)
        self.refresh_button.native.setMaximumWidth(36)
        self.device = ComboBox(label="device", choices=self._device_choices)
        self.tile_size = SpinBox(label="tile size", value=0, min=0, max=8192, step=32,
                                 tooltip="0 = choose automatically from the available memory")
        self.stack_mode = ComboBox(label="stack", choices=[CURRENT_PLANE, WHOLE_STACK],
                                   value=CURRENT_PLANE, visible=False)
        self.replace = CheckBox(text="replace previous result", value=False)
        self.run_button = PushButton(text="Restore")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                            labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress", visible=False)
        self.status = Label(value="")
        self.model_message = Label(value="", visible=False)

        super().__init__(widgets=[self.image, self.task, self.scale, model_row, self.model_message,
                                  self.device, self.tile_size, self.stack_mode, self.replace,
                                  buttons, self.progress, self.status], labels=True)

        self._refresher = _ClickRefresher(self.refresh_models, self.model.native)
        self.model.native.installEventFilter(self._refresher)
        self.refresh_button.changed.connect(self.refresh_models)
        self.task.changed.connect(self._on_task_changed)
        self.image.changed.connect(self._on_image_changed)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)

        layers = napari_viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layers_changed)
        layers.events.moved.connect(self._on_layers_changed)
        layers.selection.events.active.connect(self._on_active_layer)
        for layer in layers:
            layer.events.name.connect(self._on_layers_changed)
        self.refresh_models()
        self._on_active_layer()

    # ------------------------------------------------------------------ choices
    def _image_choices(self, _widget=None):
        from napari.layers import Image

        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _model_choices(self, _widget=None):
        from ..models.files import list_models

        try:
            models = list_models(self.task.value)
        except Exception as exc:  # a broken model folder must not break the widget
            return [(f"(cannot list models: {exc})", NO_MODEL)]
        if not models:
            return [("(no model for this task)", NO_MODEL)]
        return [(f"{m.name} ({m.source})", m.name) for m in models]

    def _device_choices(self, _widget=None):
        from ..core.devices import available_devices, resolve_device

        devices = list(available_devices())
        try:
            auto = str(resolve_device("auto").type)
        except Exception:  # pragma: no cover - resolve_device is total on a working torch
            auto = devices[0] if devices else "cpu"
        return [(f"auto ({auto})", "auto")] + [(d, d) for d in devices]

    def refresh_models(self, *_args) -> None:
        """Re-read the bundled and user model folders (call after saving a model)."""
        self.model.reset_choices()
        empty = self.model.value == NO_MODEL
        task = layer_io.TASK_LABELS.get(self.task.value, self.task.value)
        self.model_message.value = (
            f"No model for {task} yet: fine-tune one (Train widget / `memnet train`)\n"
            "or install the bundled weights." if empty else "")
        self.model_message.visible = empty
        if self._worker is None:
            self.run_button.enabled = not empty

    def reset_choices(self, *_args) -> None:
        """magicgui hook (called by napari when layers change): refresh every list."""
        super().reset_choices()
        self.refresh_models()

    # ----------------------------------------------------------------- reactions
    def _on_task_changed(self, *_args) -> None:
        self.scale.visible = self.task.value == "sr"
        self.refresh_models()

    def _on_layers_changed(self, event=None) -> None:
        value = getattr(event, "value", None)
        if value is not None and hasattr(value, "events"):
            value.events.name.connect(self._on_layers_changed)
        self.image.reset_choices()
        self._on_image_changed()

    def _on_active_layer(self, *_args) -> None:
        from napari.layers import Image

        active = self._viewer.layers.selection.active
        self.image.reset_choices()
        if isinstance(active, Image) and self._worker is None and not self._adding_result:
            self.image.value = active
        self._on_image_changed()

    def _on_image_changed(self, *_args) -> None:
        layer = self.image.value
        self.stack_mode.visible = layer is not None and layer_io.n_stack_axes(layer) > 0
        if self._worker is None and not self._adding_result and layer is not self._status_for:
            self.status.value = ""  # the last run's message belongs to another layer
            self._status_for = layer

    # --------------------------------------------------------------------- run
    @property
    def worker(self):
        """The running worker, or ``None``."""
        return self._worker

    def _options(self) -> dict:
        model = self.model.value
        if model in (None, NO_MODEL):
            task = layer_io.TASK_LABELS.get(self.task.value, self.task.value)
            raise ValueError(f"No MemNet model for {task}: fine-tune one or install the bundled "
                             "weights, then press \u21bb to refresh the model list.")
        return {
            "scale": int(self.scale.value) if self.task.value == "sr" else None,
            "model": model,
            "device": self.device.value,
            "tile_size": int(self.tile_size.value) or None,
        }

    def run(self, layer=None, *, start: bool = True):
        """Start restoring ``layer`` (default: the chosen image) in a worker thread.

        Returns the napari worker (started, or with ``start=False`` ready for you to
        connect to its signals and then call ``worker.start()``; a Qt signal reaches
        only the slots connected when it is emitted), or ``None`` when the input was refused
        (a napari error notification says why) or a run is already under way.
        A dask- or zarr-backed layer restored whole gets a lazy result layer at
        once instead (``None`` is returned; ``last_result_layer`` is that layer):
        only the planes and regions napari displays are computed.
        """
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_warning

        if self._worker is not None:
            show_warning("Restore (MemNet): a restoration is already running.")
            return None
        if layer is None or isinstance(layer, bool):  # magicgui button passes its value
            layer = self.image.value
            if layer is None:
                layer = self._viewer.layers.selection.active
        try:
            layer_io.validate_image_layer(layer)
            options = self._options()
            task = self.task.value
            index = None
            whole = layer_io.n_stack_axes(layer) == 0 or self.stack_mode.value == WHOLE_STACK
            if whole and layer_io.is_lazy_array(layer.data):
                options["axes"] = layer_io.layer_axes(layer)
                self.last_outcome = None
                self._add_lazy_result(layer, task, options)
                return None
            if not whole:
                index = layer_io.plane_index(layer, self._viewer.dims.point)
                image = layer_io.take_plane(layer, index)
                axes = layer_io.layer_axes(layer, plane_only=True)
            else:
                image = np.asarray(layer.data)
                axes = layer_io.layer_axes(layer)
            layer_io.check_finite(image, layer.name)
        except ValueError as exc:
            show_error(f"Restore (MemNet): {exc}")
            self.status.value = f"Not started: {exc}"
            return None

        options["axes"] = axes
        self._cancel_event = threading.Event()
        self._status_for = self.image.value
        self._run_context = {"layer": layer, "task": task, "scale": options["scale"],
                             "index": index, "model": options["model"],
                             "replace": bool(self.replace.value)}
        worker = create_worker(_restore_job, image, task, options, self._cancel_event,
                               _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True)
        where = f" (plane {index})" if index else ""
        self.status.value = f"Restoring {layer.name!r}{where}\u2026"
        if start:
            worker.start()
        return worker

    def run_blocking(self, layer=None, timeout: float | None = 600.0):
        """Run and wait (processing Qt events) until done; return the result layer or ``None``.

        Raises ``TimeoutError`` (after cancelling) if ``timeout`` seconds pass.
        """
        from qtpy.QtCore import QEventLoop, QTimer

        self.last_outcome = None
        worker = self.run(layer, start=False)
        if worker is None:  # refused, or a lazy result layer was added at once
            outcome = self.last_outcome
            return self.last_result_layer if outcome is not None and outcome.data is not None else None
        loop = QEventLoop()
        worker.finished.connect(loop.quit)  # connected before the worker can finish
        worker.start()
        timed_out = []
        if timeout is not None:
            def _expire():
                timed_out.append(True)
                loop.quit()
            QTimer.singleShot(int(timeout * 1000), _expire)
        loop.exec()
        if timed_out and self._worker is not None:
            self.cancel()
            raise TimeoutError(f"restoration did not finish within {timeout} s (cancelled)")
        outcome = self.last_outcome
        return self.last_result_layer if outcome is not None and outcome.data is not None else None

    def cancel(self, *_args) -> None:
        """Ask the running worker to stop after the current tile."""
        if self._cancel_event is not None and self._worker is not None:
            self._cancel_event.set()
            self.status.value = "Cancelling after the current tile\u2026"
            self.cancel_button.enabled = False

    # -------------------------------------------------- main-thread callbacks
    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running and self.model.value != NO_MODEL
        self.cancel_button.enabled = running
        self.progress.visible = running
        if running:
            self.progress.max = 1
            self.progress.value = 0
            self.progress.label = "progress"

    def _on_progress(self, event: Any) -> None:
        total = max(int(event.total), 1)
        self.progress.max = total
        self.progress.value = min(int(event.done), total)
        self.status.value = progress_text(int(event.done), int(event.total),
                                          getattr(event, "elapsed_s", None),
                                          getattr(event, "eta_s", None))

    def _on_returned(self, outcome: RunOutcome) -> None:
        from napari.utils.notifications import show_error, show_info

        self.last_outcome = outcome
        ctx = self._run_context or {}
        if outcome.cancelled:
            self.status.value = "Cancelled: no layer was added."
            show_info("Restore (MemNet): cancelled, no layer added.")
            return
        if outcome.error is not None:
            self.status.value = f"Failed: {outcome.error}"
            show_error(f"Restore (MemNet): {outcome.error}")
            return
        layer = ctx["layer"]
        data, kwargs = layer_io.result_layer_kwargs(
            layer, outcome.data, task=ctx["task"], scale=ctx["scale"], index=ctx["index"],
            extra_metadata={"model": ctx["model"]})
        target = self._place_result(data, kwargs, replace=ctx.get("replace", False), source=layer)
        self.status.value = f"Done in {format_seconds(outcome.seconds)} \u2192 {target.name!r}"

    def _place_result(self, data, kwargs: dict, *, replace: bool, source, lazy: bool = False):
        """Add the result layer, or update the previous one when ``replace`` is on."""
        target = None
        if replace and kwargs["name"] in self._viewer.layers:
            candidate = self._viewer.layers[kwargs["name"]]
            if layer_io.is_memnet_result(candidate) and candidate.name != source.name:
                target = candidate
        self._adding_result = True  # keep the input chosen when napari selects the new layer
        try:
            if target is not None:
                layer_io.update_layer(target, data, kwargs)
            elif lazy:  # added hidden: shown once added, it slices only the viewed plane
                target = self._viewer.add_image(data, **{**kwargs, "visible": False})
                target.visible = True
            else:
                target = self._viewer.add_image(data, **kwargs)
        finally:
            self._adding_result = False
        self.last_result_layer = target
        return target

    def _add_lazy_result(self, layer, task: str, options: dict):
        """Dask/zarr-backed layers: a lazy result layer, restored block by block as it is viewed."""
        from .lazy_layer import lazy_result_for_layer

        extra = {k: v for k, v in options.items() if k in ("scale", "model", "device", "tile_size", "axes")}
        data, kwargs = lazy_result_for_layer(layer, task, **extra)
        kwargs["metadata"]["napari_memnet"]["model"] = options["model"]
        target = self._place_result(data, kwargs, replace=bool(self.replace.value), source=layer,
                                    lazy=True)
        self.last_outcome = RunOutcome(data=data)
        self.status.value = (f"Added lazy result {target.name!r}: planes are restored as you view them "
                             "(dask-backed input).")
        return target

    def _on_errored(self, exc: Exception) -> None:
        # napari's worker already relays the exception to its notification manager.
        self.last_outcome = RunOutcome(error=f"{type(exc).__name__}: {exc}")
        self.status.value = f"Failed: {type(exc).__name__}: {exc}"

    def _on_finished(self) -> None:
        self._worker = None
        self._cancel_event = None
        self._set_running(False)
        self.progress.visible = False
