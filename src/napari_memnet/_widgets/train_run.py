"""The Train widget's run control: the napari worker of Check data, Start, Stop and
Resume, and its signals on the main thread.

``TrainRun(form)`` is composed into ``TrainWidget``: it asks the form for the
data request and the settings, asks the Qt-free ``TrainController`` what to run
(refused when it would replace existing work), runs ``train_job``/``check_job``
in a napari ``thread_worker`` and shows the worker's events in the form's
status line, progress bar, live plots and preview layer. The worker never
touches Qt.
"""

from __future__ import annotations

from . import train_data as td
from .train_controller import TrainController
from .train_job import DataChecked, JobOutcome, Preview

PREVIEW_LAYER = "MemNet training preview"


class TrainRun:
    """The worker side of a ``TrainWidget`` (``form``), with its ``TrainController``."""

    def __init__(self, form):
        self.form = form
        self.controller = TrainController()
        self.worker = None

    def check_data(self):
        """Run the engine's data checks in a worker; the verdict shows under the buttons."""
        from napari.qt.threading import create_worker

        from .train_job import check_job

        form = self.form
        if self.worker is not None:
            return None
        try:
            request = form.data_request()
            kwargs = form.config_kwargs(request)
        except ValueError as exc:
            form.show_problem(str(exc))
            return None
        worker = create_worker(check_job, request, kwargs, _start_thread=False)
        worker.returned.connect(self._on_checked)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        form.update_buttons()
        form.status.value = "Checking the data\u2026"
        worker.start()
        return worker

    def start(self, resume: bool = False):
        """Start training in a worker thread; return the worker, or ``None`` if refused (message shown)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_warning

        from .train_job import train_job

        form = self.form
        if self.worker is not None:
            show_warning("Train (MemNet): training is already running.")
            return None
        try:
            request, kwargs = self.controller.training_run(
                resume=resume, name=form.model_name.value.strip(), steps=form.steps.value,
                make_request=form.data_request, make_kwargs=form.config_kwargs)
        except ValueError as exc:
            form.show_problem(str(exc))
            return None
        form.data_message.visible = False
        if not resume:
            form.live.clear()
        worker = create_worker(train_job, request, kwargs, resume=resume, stop=self.controller.stop_event,
                               preview_every=int(form.preview_every.value), _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        form.progress.max, form.progress.value = max(1, kwargs["steps"]), 0
        form.status.value = ("Resuming" if resume else "Checking the data and building the model") + "\u2026"
        form.update_buttons()
        worker.start()
        return worker

    def stop(self) -> None:
        """End after the current step; the run saves a checkpoint and a usable model."""
        if self.worker is not None and self.controller.stop():
            self.form.status.value = "Stopping after the current step (saving a checkpoint and the model)\u2026"
            self.form.update_buttons()

    def wait(self, timeout: float | None = 600.0) -> None:
        """Process Qt events until the running worker ends (``TimeoutError`` after stopping it)."""
        from qtpy.QtCore import QEventLoop, QTimer

        if self.worker is None:
            return
        loop = QEventLoop()
        poll = QTimer()  # the worker may have finished before we got here: poll our own state
        poll.timeout.connect(lambda: loop.quit() if self.worker is None else None)
        poll.start(20)
        expired = []
        deadline = QTimer(singleShot=True)
        deadline.timeout.connect(lambda: (expired.append(True), loop.quit()))
        if timeout is not None:
            deadline.start(int(timeout * 1000))
        if self.worker is not None:
            loop.exec()
        poll.stop()
        deadline.stop()
        if expired and self.worker is not None:
            self.stop()
            raise TimeoutError(f"training did not finish within {timeout} s (stop requested)")

    # -------------------------------------------------- main-thread callbacks
    def _on_yielded(self, event) -> None:
        from ..training.events import CheckpointSaved, Started, Step, Validation

        form = self.form
        text = self.controller.event_text(event)
        if text is not None:
            form.status.value = text
        if isinstance(event, DataChecked):
            form.data_message.value = self.controller.data_text(event)
            form.data_message.visible = True
        elif isinstance(event, Started):
            form.progress.max, form.progress.value = max(1, event.total), event.step
        elif isinstance(event, Step):
            form.progress.max, form.progress.value = max(1, event.total), min(event.step, event.total)
            form.live.show_event(event)
        elif isinstance(event, Validation):
            form.live.show_event(event)
        elif isinstance(event, Preview):
            self._show_preview(event)
        elif isinstance(event, CheckpointSaved):
            form.resume_button.tooltip = f"checkpoint at step {event.step}: {event.path}"

    def _show_preview(self, event: Preview) -> None:
        """Create or update the preview layer (placed over its held-out region when known)."""
        viewer = self.form._viewer
        kwargs = td.preview_placement((self.controller.last_run or {}).get("request"), event.data.shape)
        metadata = {"napari_memnet": {"preview_step": event.step}}
        if PREVIEW_LAYER in viewer.layers:
            target = viewer.layers[PREVIEW_LAYER]
            target.data, target.metadata = event.data, metadata
            if kwargs:
                target.scale, target.translate = kwargs["scale"], kwargs["translate"]
        else:
            viewer.add_image(event.data, name=PREVIEW_LAYER, contrast_limits=(0.0, 1.0), metadata=metadata,
                             **kwargs)

    def _on_checked(self, result) -> None:
        if isinstance(result, JobOutcome):
            self.controller.last_outcome = result
            self.form.show_problem(result.error)
        else:
            self._on_yielded(result)

    def _on_returned(self, outcome: JobOutcome) -> None:
        from napari.utils.notifications import show_error, show_info

        form = self.form
        self.controller.last_outcome = outcome
        if outcome.refused:
            form.show_problem(outcome.error)
            return
        if outcome.error is not None:
            form.status.value = f"Failed: {outcome.error}"
            show_error(f"Train (MemNet): {outcome.error}")
            return
        status, note = self.controller.finished_text(outcome)
        form.status.value = status
        form.refresh_models()
        show_info(f"Train (MemNet): {note}")

    def _on_errored(self, exc: Exception) -> None:
        self.controller.last_outcome = JobOutcome(error=f"{type(exc).__name__}: {exc}")
        self.form.status.value = f"Failed: {type(exc).__name__}: {exc}"

    def _on_finished(self) -> None:
        self.worker = None
        self.controller.end()
        self.form.update_buttons()
