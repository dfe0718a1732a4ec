"""The Train widget's run control: Check data, Start, Stop, Resume and the worker's events.

``TrainRunMixin`` is the half of ``TrainWidget`` that drives a run: it takes
the data request and settings from the form (the widget's ``data_request`` and
``config_kwargs``), refuses a Start that would replace existing work
(``refuse_replacing``: the engine's ``check_outputs`` rule in the widget's
words), runs ``train_job``/``check_job`` in a napari ``thread_worker`` and
handles the worker's signals on the main thread: status line, progress bar,
live plots, the preview layer, the outcome. The worker never touches Qt.
"""

from __future__ import annotations

import threading
import time

from . import train_data as td
from ..core.timefmt import format_seconds
from .train_job import DataChecked, JobOutcome, Preview

PREVIEW_LAYER = "MemNet training preview"


def refuse_replacing(kwargs: dict, resume: bool) -> None:
    """ValueError, in the widget's words, if a run of ``kwargs`` would replace existing work.

    The engine's rule (``training.runs.check_outputs``) without its ``overwrite`` option: the widget
    never replaces a run or a model; it offers Resume, or another 'save as' name."""
    from ..training.runs import bundled_name_problem, existing_outputs

    name, model_dir = kwargs["name"], kwargs.get("model_dir")
    bundled = bundled_name_problem(name, model_dir)
    if bundled:
        raise ValueError(f"{bundled}: choose another 'save as' name")
    ckpt, model_files = existing_outputs(name, kwargs.get("out_dir"), model_dir)
    if ckpt is not None and not resume:
        raise ValueError(f"a run named {name!r} already has a checkpoint in {ckpt.parent}: "
                         "press Resume to continue it, or choose another 'save as' name")
    if ckpt is None and model_files:
        raise ValueError(f"a model named {name!r} already exists ({', '.join(map(str, model_files))}): choose "
                         "another 'save as' name (training under it would replace that model)")


class TrainRunMixin:
    """Run control for ``TrainWidget`` (which provides the form, ``data_request`` and ``config_kwargs``)."""

    @property
    def worker(self):
        """The running worker, or ``None``."""
        return self._worker

    def check_data(self):
        """Run the engine's data checks in a worker; the verdict shows under the buttons."""
        from napari.qt.threading import create_worker

        from .train_job import check_job

        if self._worker is not None:
            return None
        try:
            request = self.data_request()
            kwargs = self.config_kwargs(request)
        except ValueError as exc:
            self._show_problem(str(exc))
            return None
        worker = create_worker(check_job, request, kwargs, _start_thread=False)
        worker.returned.connect(self._on_checked)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._update_buttons()
        self.status.value = "Checking the data\u2026"
        worker.start()
        return worker

    def start(self, resume: bool = False):
        """Start training in a worker thread; return the worker, or ``None`` if refused (message shown)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_warning

        from .train_job import train_job

        if self._worker is not None:
            show_warning("Train (MemNet): training is already running.")
            return None
        try:
            if resume and self._last_run and self._last_run["kwargs"]["name"] == self.model_name.value.strip():
                request, kwargs = self._last_run["request"], dict(self._last_run["kwargs"])
                kwargs["steps"] = max(int(self.steps.value), 1)
            else:
                request = self.data_request()
                kwargs = self.config_kwargs(request)
            refuse_replacing(kwargs, resume)
        except ValueError as exc:
            self._show_problem(str(exc))
            return None
        self.data_message.visible = False
        self._last_run = {"request": request, "kwargs": kwargs}
        self._stop_event = threading.Event()
        self.events = []
        if not resume:
            self.live.clear()
        preview = int(self.preview_every.value)
        worker = create_worker(train_job, request, kwargs, resume=resume, stop=self._stop_event,
                               preview_every=preview, _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._t_start = time.perf_counter()
        self.progress.max, self.progress.value = max(1, kwargs["steps"]), 0
        self.status.value = ("Resuming" if resume else "Checking the data and building the model") + "\u2026"
        self._update_buttons()
        worker.start()
        return worker

    def resume(self):
        """Continue the run saved under 'save as' from its checkpoint (up to 'steps')."""
        return self.start(resume=True)

    def stop(self) -> None:
        """End after the current step; the run saves a checkpoint and a usable model."""
        if self._stop_event is not None and self._worker is not None:
            self._stop_event.set()
            self.status.value = "Stopping after the current step (saving a checkpoint and the model)\u2026"
            self._update_buttons()

    def run_blocking(self, resume: bool = False, timeout: float | None = 600.0) -> JobOutcome | None:
        """Start (or resume) and wait, processing Qt events; return the outcome (``None`` if refused)."""
        worker = self.start(resume=resume)
        if worker is None:
            return None
        self.wait(timeout)
        return self.last_outcome

    def wait(self, timeout: float | None = 600.0) -> None:
        """Process Qt events until the running worker ends (``TimeoutError`` after stopping it)."""
        from qtpy.QtCore import QEventLoop, QTimer

        if self._worker is None:
            return
        loop = QEventLoop()
        poll = QTimer()  # the worker may have finished before we got here: poll our own state
        poll.timeout.connect(lambda: loop.quit() if self._worker is None else None)
        poll.start(20)
        expired = []
        deadline = QTimer(singleShot=True)
        deadline.timeout.connect(lambda: (expired.append(True), loop.quit()))
        if timeout is not None:
            deadline.start(int(timeout * 1000))
        if self._worker is not None:
            loop.exec()
        poll.stop()
        deadline.stop()
        if expired and self._worker is not None:
            self.stop()
            raise TimeoutError(f"training did not finish within {timeout} s (stop requested)")

    # -------------------------------------------------- main-thread callbacks
    def _on_yielded(self, event) -> None:
        from ..training.events import BatchNormRecalibrated, CheckpointSaved, Finished, Started, Step, Validation

        self.events.append(event)
        if isinstance(event, DataChecked):
            notes = "".join(f"\nNote: {n}" for n in event.notes)
            self.data_message.value = (f"Data OK: {event.train_images} training image(s), "
                                       f"{event.val_items} validation item(s).{notes}")
            self.data_message.visible = True
            if self._stop_event is None:  # "Check data" only
                self.status.value = "Data checked."
        elif isinstance(event, Started):
            self.progress.max, self.progress.value = max(1, event.total), event.step
            where = f"resumed at step {event.step}" if event.resumed else "started"
            self.status.value = (f"Training {where} on {event.device} ({event.parameters:,} parameters, "
                                 f"{event.train_images} image(s))\u2026")
        elif isinstance(event, Step):
            self.progress.max, self.progress.value = max(1, event.total), min(event.step, event.total)
            elapsed = time.perf_counter() - self._t_start
            self.status.value = (f"step {event.step}/{event.total} \u00b7 loss {event.loss:.3g} \u00b7 "
                                 f"{format_seconds(elapsed, 'words')} elapsed \u00b7 ETA {format_seconds(event.eta_s, 'words')}")
            self.live.show_event(event)
        elif isinstance(event, Validation):
            self.live.show_event(event)
        elif isinstance(event, Preview):
            self._show_preview(event)
        elif isinstance(event, CheckpointSaved):
            self.resume_button.tooltip = f"checkpoint at step {event.step}: {event.path}"
        elif isinstance(event, BatchNormRecalibrated):
            self.status.value = (f"step {event.step}: BatchNorm statistics recalibrated over {event.batches} "
                                 "batches; validating and saving the model\u2026")
        elif isinstance(event, Finished):
            self.last_model = event.model_name  # the lists are refreshed once, in _on_returned

    def _show_preview(self, event: Preview) -> None:
        """Create or update the preview layer (placed over its held-out region when known)."""
        kwargs = td.preview_placement((self._last_run or {}).get("request"), event.data.shape)
        metadata = {"napari_memnet": {"preview_step": event.step}}
        if PREVIEW_LAYER in self._viewer.layers:
            target = self._viewer.layers[PREVIEW_LAYER]
            target.data, target.metadata = event.data, metadata
            if kwargs:
                target.scale, target.translate = kwargs["scale"], kwargs["translate"]
        else:
            self._viewer.add_image(event.data, name=PREVIEW_LAYER, contrast_limits=(0.0, 1.0),
                                   metadata=metadata, **kwargs)

    def _on_checked(self, result) -> None:
        if isinstance(result, JobOutcome):
            self.last_outcome = result
            self._show_problem(result.error)
        else:
            self._on_yielded(result)

    def _on_returned(self, outcome: JobOutcome) -> None:
        from napari.utils.notifications import show_error, show_info

        self.last_outcome = outcome
        if outcome.refused:
            self._show_problem(outcome.error)
            return
        if outcome.error is not None:
            self.status.value = f"Failed: {outcome.error}"
            show_error(f"Train (MemNet): {outcome.error}")
            return
        f = outcome.finished
        self.last_model = f.model_name
        before = "?" if f.base_model_psnr is None else f"{f.base_model_psnr:.2f}"
        after = "?" if f.psnr is None else f"{f.psnr:.2f}"
        how = "Stopped" if f.stopped else "Done"
        self.status.value = (f"{how} at step {f.step}/{f.total} in {format_seconds(outcome.seconds, 'words')}: saved "
                             f"{f.model_name!r}; validation PSNR {before} \u2192 {after} dB")
        self.refresh_models()
        show_info(f"Train (MemNet): saved model {f.model_name!r} (validation PSNR {before} \u2192 {after} dB)")

    def _on_errored(self, exc: Exception) -> None:
        self.last_outcome = JobOutcome(error=f"{type(exc).__name__}: {exc}")
        self.status.value = f"Failed: {type(exc).__name__}: {exc}"

    def _on_finished(self) -> None:
        self._worker = None
        self._stop_event = None
        self._update_buttons()
