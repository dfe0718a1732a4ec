"""The Train widget without Qt: the state of its runs and what their events say.

``TrainController`` decides what Start, Resume and Check data run (the data
request and the ``TrainConfig`` settings from the form, refused when they
would replace existing work: ``refuse_replacing``), keeps the run's stop event,
its events and its outcome, and turns events and outcomes into the status
text. The form (``train_widget``) owns the fields; ``train_run.TrainRun`` the
napari worker and the signals. Nothing here touches Qt.
"""

from __future__ import annotations

import threading
import time

from ..core.timefmt import format_seconds
from .train_job import DataChecked, JobOutcome


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


class TrainController:
    """What the Train widget's runs are and say; ``events`` holds every event of the current run."""

    def __init__(self):
        self.last_run: dict | None = None  # {"request": DataRequest, "kwargs": TrainConfig kwargs}
        self.stop_event: threading.Event | None = None  # set while a training (not a check) runs
        self.events: list = []
        self.last_outcome: JobOutcome | None = None
        self.last_model: str | None = None
        self.t_start = 0.0

    def training_run(self, *, resume: bool, name: str, steps: int, make_request, make_kwargs) -> tuple:
        """``(request, kwargs)`` of a Start (or Resume), its stop event armed; ValueError if refused.

        Resume reuses the last run's request when it has the same name (the layers read then)."""
        if resume and self.last_run and self.last_run["kwargs"]["name"] == name:
            request, kwargs = self.last_run["request"], dict(self.last_run["kwargs"])
            kwargs["steps"] = max(int(steps), 1)
        else:
            request = make_request()
            kwargs = make_kwargs(request)
        refuse_replacing(kwargs, resume)
        self.last_run = {"request": request, "kwargs": kwargs}
        self.stop_event = threading.Event()
        self.events = []
        self.t_start = time.perf_counter()
        return request, kwargs

    def can_stop(self) -> bool:
        return self.stop_event is not None and not self.stop_event.is_set()

    def stop(self) -> bool:
        """Ask the training to end after the current step; False when none runs."""
        if self.stop_event is None:
            return False
        self.stop_event.set()
        return True

    def end(self) -> None:
        self.stop_event = None

    def event_text(self, event) -> str | None:
        """The status line an event gives (None: it does not change it); ``events`` keeps it."""
        from ..training.events import BatchNormRecalibrated, Finished, Started, Step

        self.events.append(event)
        if isinstance(event, DataChecked):
            return "Data checked." if self.stop_event is None else None
        if isinstance(event, Started):
            where = f"resumed at step {event.step}" if event.resumed else "started"
            return (f"Training {where} on {event.device} ({event.parameters:,} parameters, "
                    f"{event.train_images} image(s))\u2026")
        if isinstance(event, Step):
            elapsed = time.perf_counter() - self.t_start
            return (f"step {event.step}/{event.total} \u00b7 loss {event.loss:.3g} \u00b7 "
                    f"{format_seconds(elapsed, 'words')} elapsed \u00b7 ETA {format_seconds(event.eta_s, 'words')}")
        if isinstance(event, BatchNormRecalibrated):
            return (f"step {event.step}: BatchNorm statistics recalibrated over {event.batches} "
                    "batches; validating and saving the model\u2026")
        if isinstance(event, Finished):
            self.last_model = event.model_name
        return None

    @staticmethod
    def data_text(event: DataChecked) -> str:
        notes = "".join(f"\nNote: {n}" for n in event.notes)
        return f"Data OK: {event.train_images} training image(s), {event.val_items} validation item(s).{notes}"

    def finished_text(self, outcome: JobOutcome) -> tuple[str, str]:
        """(status line, notification) of a run that saved its model."""
        f = outcome.finished
        self.last_model = f.model_name
        before = "?" if f.base_model_psnr is None else f"{f.base_model_psnr:.2f}"
        after = "?" if f.psnr is None else f"{f.psnr:.2f}"
        how = "Stopped" if f.stopped else "Done"
        # noisy images alone: the -10 log10 MSE against held-out noisy targets, not a PSNR to clean images
        noisy_only = any(getattr(e, "self_supervised_loss", None) is not None for e in self.events)
        what = "self-supervised validation (vs noisy targets)" if noisy_only else "validation PSNR"
        return (f"{how} at step {f.step}/{f.total} in {format_seconds(outcome.seconds, 'words')}: saved "
                f"{f.model_name!r}; {what} {before} \u2192 {after} dB",
                f"saved model {f.model_name!r} ({what} {before} \u2192 {after} dB)")
