"""The "Train (MemNet)" dock widget: fine-tune a multi-supervised MemNet on the user's images.

A magicgui ``Container``. ``Start`` describes the data on the main thread
(``train_data``: the layers' planes are pointed at, folders only named), then
runs ``train_job`` in a napari ``thread_worker``: reading and mapping the
layers, the engine's checks, the trainer's event stream and previews. The worker never touches Qt; every event reaches the
main thread through the worker's ``yielded`` signal and updates the progress
bar, the plots (``train_plot``), the w_m bars and the preview layer.
``Stop`` sets the trainer's stop event (it saves a checkpoint and a usable
model); ``Resume`` continues that run from its checkpoint. The result is a user
model (``list_models()``); the Restore widget's list is refreshed and
``Restore with it`` applies it to the selected layer through that widget;
``Export (bioimage.io)`` writes it as a BioImage Model Zoo package (``train_result``).

This module is the form (fields, choices, visibility, the settings they
describe), composed with ``train_run.TrainRun`` (the worker and its signals)
and its Qt-free ``train_controller.TrainController`` (what runs, the state of
the run, what its events say).

Scripting: ``w = TrainWidget(viewer); w.add_pair(noisy_layer, clean_layer); outcome = w.run_blocking()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, LineEdit,
                              ProgressBar, PushButton, Select, SpinBox)

from . import layer_io
from . import train_data as td
from .train_plot import LiveView
from .train_result import ModelExport, find_restore_widget, restore_with
from .train_run import PREVIEW_LAYER, TrainRun
from .train_settings import ARCH_CHOICES, WIDGET_CHANNELS, config_kwargs

if TYPE_CHECKING:  # pragma: no cover
    import napari

FROM_SCRATCH = "__from_scratch__"
__all__ = ["FROM_SCRATCH", "PREVIEW_LAYER", "TrainWidget"]


def _row(*widgets, label=None) -> Container:
    row = Container(widgets=list(widgets), layout="horizontal", labels=False, label=label or "")
    row.margins = (0, 0, 0, 0)
    return row


class TrainWidget(Container):
    """Fine-tune (or train from scratch) a MemNet on layer pairs, folders or clean images."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self._viewer = napari_viewer
        self.run_control = TrainRun(self)  # the worker and its signals, with the Qt-free controller
        self.controller = self.run_control.controller
        self._pairs: list[tuple] = []

        # ---------------------------------------------------------------- data
        self.source = ComboBox(label="data", choices=list(td.SOURCES), value=td.SOURCE_LAYER_PAIRS)
        self.degraded = ComboBox(label="degraded layer", choices=self._image_choices, nullable=True)
        self.clean = ComboBox(label="clean layer", choices=self._image_choices, nullable=True)
        self.add_pair_button = PushButton(text="add pair")
        self.clear_pairs_button = PushButton(text="clear")
        self.pairs_label = Label(value="")
        self.pair_row = _row(self.add_pair_button, self.clear_pairs_button, self.pairs_label, label="pairs")
        self.clean_layers = Select(label="clean layers", choices=self._image_choices)
        self.degraded_dir = FileEdit(label="degraded folder", mode="d")
        self.clean_dir = FileEdit(label="clean folder", mode="d")
        self.levels = LineEdit(label="levels", value=td.DEFAULT_LEVEL_TEXT["denoise"])
        self.validation = ComboBox(label="validation", choices=[td.VAL_REGION, td.VAL_FRACTION, td.VAL_NONE],
                                   value=td.VAL_REGION)
        self.val_fraction = FloatSpinBox(label="held-out fraction", value=0.2, min=0.05, max=0.5, step=0.05)
        # ---------------------------------------------------------------- model
        self.task = ComboBox(label="task", value="denoise",
                             choices=[(label, key) for key, label in layer_io.TASK_LABELS.items()])
        self.base_model = ComboBox(label="base model", choices=self._base_choices)
        self.architecture = ComboBox(label="architecture", choices=ARCH_CHOICES, value="memnet")
        self.blocks = SpinBox(label="memory blocks M", value=4, min=1, max=12)
        self.recursions = SpinBox(label="recursions R", value=4, min=1, max=12)
        self.channels = SpinBox(label="channels C", value=48, min=4, max=256, step=4,
                                tooltip="the paper uses M6 R6 C64")
        self.unshuffle = SpinBox(label="space-to-depth s", value=2, min=1, max=4,
                                 tooltip="1: the paper's MemNet; s > 1: the fast MemNet, whose blocks run on the "
                                         "s x s pixel-unshuffled image (about 1/s^2 of the cost)")
        self.shared_recursions = CheckBox(text="recursions share their convs (the paper's)", value=True,
                                          tooltip="off: each recursion gets its own convs (same cost, more weights)")
        self.steps = SpinBox(label="steps", value=300, min=1, max=10_000_000)
        self.model_name = LineEdit(label="save as", value="my-denoise-model")
        # ---------------------------------------------------------------- advanced
        self.show_advanced = CheckBox(text="advanced settings", value=False)
        self.patch_size = SpinBox(label="patch size", value=31, min=8, max=512)
        self.batch_size = SpinBox(label="batch size", value=16, min=1, max=1024)
        self.learning_rate = LineEdit(label="learning rate", value="auto",
                                      tooltip="auto: 1e-4 when fine-tuning a model, the training engine's Adam default from scratch")
        self.multi_supervised = CheckBox(text="multi-supervised loss", value=True)
        self.device = ComboBox(label="device", choices=self._device_choices)
        self.validate_every = SpinBox(label="validate every", value=0, min=0, max=1_000_000,
                                      tooltip="steps between validations; 0 = a tenth of the steps")
        self.preview_every = SpinBox(label="preview every", value=0, min=0, max=1_000_000,
                                     tooltip="steps between preview updates; 0 = at each validation")
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.advanced = Container(widgets=[self.patch_size, self.batch_size, self.learning_rate,
                                           self.multi_supervised, self.device, self.validate_every,
                                           self.preview_every, self.seed], labels=True, visible=False)
        self.advanced.margins = (12, 0, 0, 0)
        # ---------------------------------------------------------------- run
        self.check_button = PushButton(text="Check data")
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        self.data_message = Label(value="", visible=False)
        self.restore_button = PushButton(text="Restore with it", enabled=False)
        self.exporter = ModelExport(self)
        super().__init__(widgets=[
            self.source, self.degraded, self.clean, self.pair_row, self.clean_layers, self.degraded_dir,
            self.clean_dir, self.levels, self.validation, self.val_fraction, self.task, self.base_model,
            self.architecture, self.blocks, self.recursions, self.channels, self.unshuffle, self.shared_recursions,
            self.steps, self.model_name,
            self.show_advanced,
            self.advanced, _row(self.check_button, self.start_button, self.stop_button, self.resume_button),
            self.data_message, self.progress, self.status], labels=True)
        for label in (self.status, self.data_message, self.pairs_label):
            label.native.setWordWrap(True)
        # live view: plain Qt widgets (QPainter plots) under the form
        self.live = LiveView()
        self.loss_plot, self.psnr_plot, self.weight_bars = self.live.loss_plot, self.live.psnr_plot, self.live.weight_bars
        layout = self.native.layout()
        layout.addWidget(self.live)
        self.result_row = _row(self.restore_button, self.exporter.button)
        layout.addWidget(self.result_row.native)

        self.source.changed.connect(self._on_source_changed)
        self.validation.changed.connect(self._update_visibility)
        self.task.changed.connect(self._on_task_changed)
        self.architecture.changed.connect(self._on_architecture_changed)
        self.base_model.changed.connect(self._update_visibility)
        self.show_advanced.changed.connect(self._update_visibility)
        self.model_name.changed.connect(self.update_buttons)
        self.add_pair_button.changed.connect(lambda *_: self.add_pair())
        self.clear_pairs_button.changed.connect(lambda *_: self.clear_pairs())
        self.check_button.changed.connect(lambda *_: self.check_data())
        self.start_button.changed.connect(lambda *_: self.start())
        self.stop_button.changed.connect(lambda *_: self.stop())
        self.resume_button.changed.connect(lambda *_: self.resume())
        self.restore_button.changed.connect(lambda *_: self.restore_with_model())
        layers = napari_viewer.layers
        for signal in (layers.events.inserted, layers.events.removed, layers.events.moved):
            signal.connect(self._on_layers_changed)
        for layer in layers:
            layer.events.name.connect(self._on_layers_changed)
        self._on_layers_changed()
        self._update_visibility()

    # ------------------------------------------------------------------ choices
    def _image_choices(self, _widget=None):
        from napari.layers import Image

        return [(layer.name, layer) for layer in self._viewer.layers
                if isinstance(layer, Image) and layer.name != PREVIEW_LAYER]

    def _base_choices(self, _widget=None):
        from ..models.files import list_models

        try:
            models = list_models(self.task.value)
        except Exception as exc:  # a broken model folder must not break the widget
            return [(f"(cannot list models: {exc})", FROM_SCRATCH)]
        return [(f"{m.name} ({m.source})", m.name) for m in models] + [("from scratch (M, R, C)", FROM_SCRATCH)]

    def _device_choices(self, _widget=None):
        try:
            from ..core.devices import available_devices

            devices = list(available_devices())
        except ImportError:  # napari_memnet.core.devices not installed yet: the CPU always works
            devices = ["cpu"]
        return [("auto", "auto")] + [(d, d) for d in devices]

    def refresh_models(self, *_args) -> None:
        """Re-read the model lists (base models here, and the Restore widget's if docked)."""
        self.base_model.reset_choices()
        restore = self._restore_widget()
        if restore is not None:
            restore.refresh_models()

    def _restore_widget(self, create: bool = False):
        return find_restore_widget(self._viewer, create)

    # ----------------------------------------------------------------- reactions
    def _on_layers_changed(self, event=None) -> None:
        value = getattr(event, "value", None)
        if value is not None and hasattr(value, "events"):  # follow renames of new layers
            value.events.name.connect(self._on_layers_changed)
        for combo in (self.degraded, self.clean, self.clean_layers):
            combo.reset_choices()
        alive = set(map(id, self._viewer.layers))
        self._pairs = [(d, c) for d, c in self._pairs if id(d) in alive and id(c) in alive]
        images = [c[1] for c in self._image_choices()]
        if len(images) >= 2 and self.degraded.value is None and self.clean.value is None:
            self.degraded.value, self.clean.value = images[-1], images[0]  # top layer = degraded sample
        self._show_pairs()

    def _on_task_changed(self, *_args) -> None:
        task = self.task.value
        self.levels.value = td.DEFAULT_LEVEL_TEXT[task]
        self.levels.tooltip = td.LEVEL_HELP[task]
        name = self.model_name.value
        if name.startswith("my-") and name.endswith("-model"):
            self.model_name.value = f"my-{task}-model"
        self.base_model.reset_choices()
        self._update_visibility()

    def _on_source_changed(self, *_args) -> None:
        """Noisy images alone start from the bundled CPU default denoiser (the engine's default)."""
        if self.source.value in td.NOISY_SOURCES and self.base_model.value != FROM_SCRATCH:
            from ..training.self_supervised import default_base_model

            self.task.value = "denoise"
            base = default_base_model()
            if base in self.base_model.choices:
                self.base_model.value = base
        self._update_visibility()

    def _on_architecture_changed(self, *_args) -> None:
        self.channels.value = WIDGET_CHANNELS[self.architecture.value]
        self._update_visibility()

    def _update_visibility(self, *_args) -> None:
        src = self.source.value
        for w in (self.degraded, self.clean, self.pair_row):
            w.visible = src == td.SOURCE_LAYER_PAIRS
        noisy = src in td.NOISY_SOURCES  # the clean-image fields take the noisy images
        self.clean_layers.visible = src in (td.SOURCE_CLEAN_LAYERS, td.SOURCE_NOISY_LAYERS)
        self.clean_layers.label, self.clean_dir.label = ("noisy layers", "noisy folder") if noisy else \
            ("clean layers", "clean folder")
        self.degraded_dir.visible = src == td.SOURCE_FOLDER_PAIRS
        self.clean_dir.visible = src in (td.SOURCE_FOLDER_PAIRS, td.SOURCE_CLEAN_FOLDER, td.SOURCE_NOISY_FOLDER)
        self.levels.visible = src in (td.SOURCE_CLEAN_LAYERS, td.SOURCE_CLEAN_FOLDER)
        if src not in td.LAYER_SOURCES and self.validation.value == td.VAL_REGION:
            self.validation.value = td.VAL_FRACTION
        self.val_fraction.visible = self.validation.value != td.VAL_NONE
        scratch = self.base_model.value == FROM_SCRATCH
        for w in (self.blocks, self.recursions, self.unshuffle, self.shared_recursions):  # MemNet's own settings
            w.visible = scratch and self.architecture.value == "memnet"
        self.channels.visible = self.architecture.visible = scratch
        self.advanced.visible = bool(self.show_advanced.value)
        self.update_buttons()

    def _run_dir(self, name: str | None = None):
        from ..models.files import user_models_dir

        return user_models_dir() / "runs" / (name or self.model_name.value)

    def _has_checkpoint(self) -> bool:
        from ..training.checkpoint import CHECKPOINT_NAME

        try:
            return (self._run_dir() / CHECKPOINT_NAME).exists()
        except Exception:  # an invalid name has no run folder
            return False

    def update_buttons(self, *_args) -> None:
        running = self.worker is not None
        self.start_button.enabled = not running
        self.check_button.enabled = not running
        self.stop_button.enabled = running and self.controller.can_stop()
        self.resume_button.enabled = not running and self._has_checkpoint()
        self.restore_button.enabled = not running and self.last_model is not None
        self.exporter.enable(running)

    # ------------------------------------------------------------------- pairs
    def add_pair(self, degraded=None, clean=None) -> None:
        """Add a (degraded, clean) layer pair (default: the two chosen layers)."""
        degraded = degraded if degraded is not None else self.degraded.value
        clean = clean if clean is not None else self.clean.value
        if degraded is None or clean is None:
            self.show_problem("pick a degraded and a clean layer first")
            return
        if any(d is degraded and c is clean for d, c in self._pairs):
            return
        self._pairs.append((degraded, clean))
        self._show_pairs()

    def clear_pairs(self) -> None:
        self._pairs = []
        self._show_pairs()

    @property
    def pairs(self) -> list[tuple]:
        """The layer pairs to train on: the added ones, else the two chosen layers."""
        if self._pairs:
            return list(self._pairs)
        if self.degraded.value is not None and self.clean.value is not None:
            return [(self.degraded.value, self.clean.value)]
        return []

    def _show_pairs(self) -> None:
        self.pairs_label.value = ("; ".join(f"{d.name} \u2192 {c.name}" for d, c in self._pairs)
                                  if self._pairs else "(the two layers above)")

    # ------------------------------------------------------------------ settings
    def data_request(self) -> td.DataRequest:
        """The data the current settings describe (layer planes copied now); ValueError if unusable."""
        src, val, frac = self.source.value, self.validation.value, float(self.val_fraction.value)
        point = self._viewer.dims.point
        if src == td.SOURCE_LAYER_PAIRS:
            return td.from_layer_pairs(self.pairs, self.task.value, val, frac, point)
        noisy = src in td.NOISY_SOURCES
        if src in (td.SOURCE_CLEAN_LAYERS, td.SOURCE_NOISY_LAYERS):
            return td.from_clean_layers(list(self.clean_layers.value or []), val, frac, point, noisy=noisy)
        if src == td.SOURCE_FOLDER_PAIRS:
            return td.from_folder_pairs(self.degraded_dir.value, self.clean_dir.value, val, frac)
        return td.from_clean_folder(self.clean_dir.value, val, frac, noisy=noisy)

    def config_kwargs(self, request: td.DataRequest) -> dict:
        """``TrainConfig`` keyword arguments from the widget (``train_settings``; checked by the engine)."""
        base = self.base_model.value
        base = None if base in (None, FROM_SCRATCH) else base
        name = self.model_name.value.strip()
        return config_kwargs(request, task=self.task.value, name=name, base=base, steps=self.steps.value,
                             architecture=self.architecture.value,
                             patch_size=self.patch_size.value, batch_size=self.batch_size.value,
                             lr_text=self.learning_rate.value, levels_text=self.levels.value,
                             arch={"blocks": int(self.blocks.value), "recursions": int(self.recursions.value),
                                   "channels": int(self.channels.value), "unshuffle": int(self.unshuffle.value),
                                   "shared_recursions": bool(self.shared_recursions.value)},
                             multi_supervised=self.multi_supervised.value, device=self.device.value,
                             seed=self.seed.value, validate_every=self.validate_every.value,
                             out_dir=str(self._run_dir(name)) if name else "")

    def show_problem(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.data_message.value = message
        self.data_message.visible = True
        self.status.value = "Not started."
        show_error(f"Train (MemNet): {message}")

    # ------------------------------------------------------------- run control
    @property
    def worker(self):
        """The running worker, or ``None``."""
        return self.run_control.worker

    @property
    def events(self) -> list:
        """Every event of the current run (for scripts and tests)."""
        return self.controller.events

    @property
    def last_outcome(self):
        return self.controller.last_outcome

    @property
    def last_model(self) -> str | None:
        return self.controller.last_model

    def check_data(self):
        """Run the engine's data checks in a worker; the verdict shows under the buttons."""
        return self.run_control.check_data()

    def start(self, resume: bool = False):
        """Start training in a worker thread; return the worker, or ``None`` if refused (message shown)."""
        return self.run_control.start(resume)

    def resume(self):
        """Continue the run saved under 'save as' from its checkpoint (up to 'steps')."""
        return self.run_control.start(resume=True)

    def stop(self) -> None:
        """End after the current step; the run saves a checkpoint and a usable model."""
        self.run_control.stop()

    def wait(self, timeout: float | None = 600.0) -> None:
        """Process Qt events until the running worker ends (``TimeoutError`` after stopping it)."""
        self.run_control.wait(timeout)

    def run_blocking(self, resume: bool = False, timeout: float | None = 600.0):
        """Start (or resume) and wait, processing Qt events; return the outcome (``None`` if refused)."""
        if self.start(resume=resume) is None:
            return None
        self.wait(timeout)
        return self.last_outcome

    # ----------------------------------------------------------------- result
    def restore_with_model(self, layer=None):
        """Restore ``layer`` (default: the selected one) with the saved model via the Restore widget."""
        if self.last_model is None:
            self.show_problem("no model trained yet")
            return None
        kwargs = (self.controller.last_run or {}).get("kwargs", {})
        if layer is None:
            active = self._viewer.layers.selection.active
            layer = active if active is not None and active.name != PREVIEW_LAYER else None
        levels = kwargs.get("levels") or (None,)
        return restore_with(self._viewer, self.last_model, kwargs.get("task", self.task.value), layer, levels[0])
