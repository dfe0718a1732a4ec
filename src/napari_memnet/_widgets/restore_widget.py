"""The "Restore (MemNet)" dock widget: a thin magicgui form over ``RestoreController``.

The **Restore** button asks the controller for a ``RestoreRequest`` (checks
that read no pixels) and starts ``restore_controller.restore_job`` in a napari
worker thread (``napari.qt.threading.create_worker``, what ``thread_worker``
builds on; worker exceptions reach napari's notifications). The worker reads,
checks and restores the image (or plans a lazy result) and never touches Qt: it
yields the engine's ``TileProgress`` events (shown on the main thread through
the worker's ``yielded`` signal) and returns an outcome that the main thread
turns into a new layer. ``Cancel`` sets a ``threading.Event`` that the engine
checks between tiles; a cancelled run adds nothing.

Scripting::

    widget = RestoreWidget(viewer)
    widget.task.value = "sr"; widget.scale.value = 2
    layer = widget.run_blocking()          # or: worker = widget.run()

Dask- or zarr-backed layers restored whole get a lazy result layer instead
(``lazy_layer``, planned in the worker): nothing is restored until napari
displays it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, Label, ProgressBar, PushButton,
                              SpinBox)
from qtpy.QtCore import QEvent, QObject

from ..core.tasks import SR_SCALES
from . import layer_io
from ..core.timefmt import format_seconds
from .progress import progress_text
from .restore_controller import NO_MODEL, RestoreController, RunOutcome, restore_job

if TYPE_CHECKING:  # pragma: no cover
    import napari

WHOLE_STACK = "whole stack"
CURRENT_PLANE = "current plane"
ENSEMBLE_CHOICES = [("off", 1), ("x2 (2x time)", 2), ("x4 (4x time)", 4), ("x8 (8x time)", 8)]


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
        self.controller = RestoreController()
        self._adding_result = False
        self._status_for = None  # the layer the status line talks about
        self.last_result_layer = None
        self.last_outcome: RunOutcome | None = None

        self.image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self.task = ComboBox(label="task", value="denoise",
                             choices=[(label, key) for key, label in layer_io.TASK_LABELS.items()])
        self.scale = ComboBox(label="scale", choices=list(SR_SCALES), value=2, visible=False)
        self.model = ComboBox(label="model", choices=self._model_choices)
        # a long model label must not widen the dock (and squeeze the canvas): elide to ~32 characters
        from qtpy.QtWidgets import QComboBox

        self.model.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.native.setMinimumContentsLength(32)
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
        self.camera = CheckBox(text="camera noise (photon + read)", value=False,
                               tooltip="counts of a camera (microscope): each plane is variance-stabilised for "
                                       "its own estimated photon and read noise, denoised, and transformed back")
        self.ensemble = ComboBox(label="self-ensemble", value=1, choices=ENSEMBLE_CHOICES,
                                 tooltip="average the model over rotated and flipped copies of the image: "
                                         "a little better (x8: +0.06 to +0.10 dB), that many times slower")
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
                                  self.device, self.tile_size, self.stack_mode, self.camera, self.ensemble,
                                  self.replace,
                                  buttons, self.progress, self.status], labels=True)

        self._refresher = _ClickRefresher(self.refresh_models, self.model.native)
        self.model.native.installEventFilter(self._refresher)
        self.refresh_button.changed.connect(self.refresh_models)
        self.task.changed.connect(self._on_task_changed)
        self.device.changed.connect(self._on_device_changed)
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
        """The task's models, the default on the chosen device first (``models.defaults``, the one rule)."""
        from ..models.defaults import model_choices
        from ..models.files import list_models

        device = getattr(getattr(self, "device", None), "value", None) or "auto"
        try:
            choices = model_choices(list_models(self.task.value), self.task.value, device)
        except Exception as exc:  # a broken model folder must not break the widget
            return [(f"(cannot list models: {exc})", NO_MODEL)]
        if not choices:
            return [("(no model for this task)", NO_MODEL)]
        return choices

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
            f"No model for {task} yet: train one (Train widget / `memnet train --task {self.task.value}`)\n"
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
        self.camera.visible = self.task.value == "denoise"
        self.refresh_models()
        self._select_default_model()

    def _on_device_changed(self, *_args) -> None:
        """Another device may have another default model (``models.defaults``): list and select it."""
        self.refresh_models()
        self._select_default_model()

    def _select_default_model(self) -> None:
        choices = self.model.choices
        if choices and choices[0] != NO_MODEL:
            self.model.value = choices[0]

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

    def run(self, layer=None, *, start: bool = True):
        """Start restoring ``layer`` (default: the chosen image) in a worker thread.

        Returns the napari worker (started, or with ``start=False`` ready for you to
        connect to its signals and then call ``worker.start()``; a Qt signal reaches
        only the slots connected when it is emitted), or ``None`` when the input was refused
        (a napari error notification says why) or a run is already under way.
        A dask- or zarr-backed layer restored whole gets a lazy result layer
        instead (planned in the worker; ``last_result_layer`` once it returns):
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
            request = self.controller.request(
                layer, task=self.task.value, model=self.model.value, scale=self.scale.value,
                device=self.device.value, tile_size=self.tile_size.value,
                whole_stack=self.stack_mode.value == WHOLE_STACK, world_point=self._viewer.dims.point,
                replace=bool(self.replace.value), camera=bool(self.camera.value) and self.task.value == "denoise",
                ensemble=self.ensemble.value)
        except ValueError as exc:
            show_error(f"Restore (MemNet): {exc}")
            self.status.value = f"Not started: {exc}"
            return None

        self._status_for = self.image.value
        self.last_outcome = None
        worker = create_worker(restore_job, *self.controller.begin(request), _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True)
        where = f" (plane {request.index})" if request.index else ""
        self.status.value = (f"Planning a lazy result for {layer.name!r}\u2026" if request.lazy
                             else f"Restoring {layer.name!r}{where}\u2026")
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
        if worker is None:  # refused
            return None
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
        if self._worker is not None and self.controller.cancel():
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
        request = self.controller.request_running
        if outcome.cancelled:
            self.status.value = "Cancelled: no layer was added."
            show_info("Restore (MemNet): cancelled, no layer added.")
            return
        if outcome.error is not None:
            self.status.value = f"Failed: {outcome.error}"
            show_error(f"Restore (MemNet): {outcome.error}")
            return
        layer, options = request.layer, request.options
        if outcome.lazy:
            from .lazy_layer import lazy_layer_kwargs

            data, kwargs = outcome.data, lazy_layer_kwargs(layer, outcome.data, request.task, options["scale"])
            kwargs["metadata"]["napari_memnet"].update(layer_io.run_metadata(options))
            target = self._place_result(data, kwargs, replace=request.replace, source=layer, lazy=True)
            self.status.value = (f"Added lazy result {target.name!r}: planes are restored as you view them "
                                 "(dask-backed input).")
            return
        data, kwargs = layer_io.result_layer_kwargs(
            layer, outcome.data, task=request.task, scale=options["scale"], index=request.index,
            extra_metadata=layer_io.run_metadata(options))
        target = self._place_result(data, kwargs, replace=request.replace, source=layer)
        self.status.value = f"Done in {format_seconds(outcome.seconds, 'words')} \u2192 {target.name!r}"

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

    def _on_errored(self, exc: Exception) -> None:
        # napari's worker already relays the exception to its notification manager.
        self.last_outcome = RunOutcome(error=f"{type(exc).__name__}: {exc}")
        self.status.value = f"Failed: {type(exc).__name__}: {exc}"

    def _on_finished(self) -> None:
        self._worker = None
        self.controller.end()
        self._set_running(False)
        self.progress.visible = False
