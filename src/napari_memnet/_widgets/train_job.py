"""The Train widget's worker body: check the data, run the trainer, make previews. No Qt.

``train_job`` is a generator run in a napari ``thread_worker``. It yields the
training engine's own events (``Started``, ``Step``, ``Validation``,
``CheckpointSaved``, ``Finished``, ``Failed``) plus two of its own:
``DataChecked`` (the data passed the engine's checks) and ``Preview`` (the
current model's output on the first validation image). It returns a
``JobOutcome``. Bad data is refused before any step, with the message of the
engine's checks naming the user's layers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from .train_data import DataRequest, check_request


@dataclass
class DataChecked:
    """The engine accepted the data: counts for the status line."""

    train_images: int
    val_items: int
    description: str
    notes: list


@dataclass
class Preview:
    """The model's output on the first validation image after ``step`` steps."""

    step: int
    data: np.ndarray
    input: np.ndarray
    target: np.ndarray


@dataclass
class JobOutcome:
    """What the worker returns: the ``Finished`` event, or an error (``refused``: no step ran)."""

    finished: object | None = None
    error: str | None = None
    refused: bool = False
    seconds: float = 0.0


def model_output(trainer, item) -> np.ndarray:
    """Run the trainer's network (eval mode, no grad) on one validation item's input."""
    import torch

    net = trainer.net
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(item.input, np.float32))[None, None].to(trainer.device)
            y = net(x)[0, 0].float().cpu().numpy()
    finally:
        net.train(was_training)
    return y


def train_job(request: DataRequest, config_kwargs: dict, *, resume: bool, stop: threading.Event,
              preview_every: int = 0):
    """Worker generator: yields events, returns a ``JobOutcome`` (see the module docstring)."""
    from ..training.config import TrainConfig
    from ..training.events import BatchNormRecalibrated, Failed, Finished, Step, Validation
    from ..training.noisy_data import SOURCE as NOISY
    from ..training.self_supervised import SelfSupervisedTrainer
    from ..training.trainer import Trainer

    start = time.perf_counter()
    try:
        config = TrainConfig(**config_kwargs)
        data = check_request(request, config)
        trainer_class = SelfSupervisedTrainer if data.source == NOISY else Trainer  # noisy images alone
        trainer = trainer_class(config, data=data, resume=resume, stop=stop)
    except (ValueError, FileNotFoundError) as exc:
        return JobOutcome(error=str(exc), refused=True, seconds=time.perf_counter() - start)
    yield DataChecked(len(data.train), len(data.val), data.description, list(request.notes))
    item = data.val[0] if data.val else None
    last_preview = None
    finished = None
    for event in trainer.run():
        yield event
        if isinstance(event, Finished):
            finished = event
        elif isinstance(event, Failed):
            return JobOutcome(error=event.error, seconds=time.perf_counter() - start)
        elif isinstance(event, BatchNormRecalibrated):
            last_preview = None  # the model changed at the same step: the final validation previews it again
        want = (isinstance(event, Validation)
                or (isinstance(event, Step) and preview_every > 0 and event.step % preview_every == 0))
        if item is not None and want and event.step != last_preview:
            last_preview = event.step
            yield Preview(event.step, model_output(trainer, item), item.input, item.target)
    return JobOutcome(finished=finished, seconds=time.perf_counter() - start)


def check_job(request: DataRequest, config_kwargs: dict):
    """Only the data check (the "Check data" button): ``DataChecked``, or a refused ``JobOutcome``."""
    from ..training.config import TrainConfig

    try:
        data = check_request(request, TrainConfig(**config_kwargs))
    except ValueError as exc:
        return JobOutcome(error=str(exc), refused=True)
    return DataChecked(len(data.train), len(data.val), data.description, list(request.notes))
