"""``fine_tune``: train or fine-tune a model from Python and install it as a user model."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .config import TrainConfig
from .events import Failed, Finished, TrainingEvent
from .intensity_maps import RESTORE, check_rule
from .trainer import Trainer


def fine_tune(clean=None, pairs=None, *, noisy=None, task: str, base_model=None, architecture: dict | str | None = None,
              steps: int = 1000, patch_size: int = 31, batch_size: int = 16, lr: float | None = None,
              multi_supervised: bool = True, name: str, levels=None, device: str = "auto", validation=None,
              callback: Callable[[TrainingEvent], None] | None = None, stop=None, out_dir=None,
              model_dir=None, resume: bool = False, overwrite: bool = False, intensity: str = RESTORE, **config):
    """Train a model on ``clean`` images (degraded on the fly) or real ``pairs``; save it as ``name``.

    ``clean``: a folder, or a list of image paths or arrays. ``pairs``: ``(degraded_folder, clean_folder)``
    matched by file name, or a list of ``(degraded, clean)`` arrays. ``noisy``: noisy images alone (a
    folder, paths or arrays; ``task="denoise"``): self-supervised training (``self_supervised.py``,
    objective ``self_supervised=`` "neighbor2neighbor" or "blindspot"), from the bundled CPU default
    denoiser unless ``base_model`` or ``architecture`` says otherwise; validation is the objective on
    held-out noisy images (``validation``: a fraction, a count, or noisy images).
    ``base_model``: name/path of a model to fine-tune (its architecture is kept, or a MemNet is grown
    to ``architecture={"blocks": M, "recursions": R}``, models/grow.py); otherwise a fresh
    network of ``architecture`` ("memnet", "red30", or a dict such as ``{"blocks": 2, "recursions": 2,
    "channels": 16}``, optionally with an ``"architecture"`` key).
    ``levels``: denoise sigma range ``(lo, hi)``, SR scales ``(2, 3, 4)``, JPEG quality range ``(lo, hi)``.
    ``validation``: a fraction (0.2) or count (2) of the images to hold out, or explicit held-out images /
    pairs. ``callback(event)`` gets every event; ``stop`` is a ``threading.Event`` that ends the run cleanly.
    Other keyword arguments are ``TrainConfig`` fields (optimizer, seed, precision, checkpoint_every...).

    Intensities are put on the networks' 0..1 scale the way ``restore`` maps its input
    (``napari_memnet.core.intensity.choose_intensity``), so the model trains on what it will see at
    restore time. Image files always; arrays with ``intensity="restore"`` (the default): a pair by
    the map of its DEGRADED array, applied to both (a uint16 pair on 200..3000 trains on about
    0..1, not on 200/65535..3000/65535), a clean array by its own map; uint8 is ``x / 255``, floats
    within 0..1 stay as they are, anything else is mapped by its 0.1/99.9th percentiles.
    ``intensity="as-is"`` says the arrays are already on that 0..1 scale (mapped by you): floats
    are used as they are, even a little outside 0..1, uint8 / 255; other integer arrays are refused.

    Checkpoints and ``events.jsonl`` go to ``out_dir`` (default: ``<user models>/runs/NAME``); the
    model goes to ``model_dir`` (default: the user model folder).

    Nothing is replaced by accident: when ``out_dir`` already holds a run's checkpoint, or
    ``model_dir`` a model called ``name``, a ValueError naming those files is raised before any
    step, unless ``resume=True`` (continue that run from its checkpoint, up to ``steps``) or
    ``overwrite=True`` (train a new run that replaces them). An overwriting run writes its
    checkpoint and log to ``out_dir/new-run/`` and replaces the old checkpoint, log and model only
    once its own model is saved (atomically), so a failure, a kill or a crash mid-run leaves the
    old ones as they were; a ``stop`` request saves the new model, which then replaces the old.
    The bundled models' names are refused for user models (they would shadow the bundled ones).

    Returns the saved ``RestorationModel``; it is at once usable as ``restore(..., model=name)`` and
    listed by ``list_models()`` (unless ``model_dir`` puts it elsewhere). Bad data raises ValueError
    before any step; a failure during training is re-raised.
    """
    from ..models.files import check_model_name, load_model, user_models_dir

    check_model_name(name)
    arch_name, arch = "memnet", {}
    if isinstance(architecture, str):
        arch_name = architecture
    elif isinstance(architecture, dict):
        arch = dict(architecture)
        arch_name = arch.pop("architecture", "memnet")
    elif architecture is not None:
        raise ValueError(f"architecture must be a name or a dict of network settings, got {type(architecture).__name__}")
    val_source = validation
    if isinstance(validation, float):
        config["val_fraction"], val_source = validation, None
    elif isinstance(validation, int) and not isinstance(validation, bool):
        config["val_count"], val_source = validation, None
    if out_dir is None:  # the model's own run folder
        out_dir = user_models_dir() / "runs" / name
    if base_model is not None and not isinstance(base_model, (str, os.PathLike)):
        raise ValueError("base_model must be a model name or a path")
    cfg = TrainConfig(task=task, levels=tuple(levels) if levels is not None else (), name=name,
                      architecture=arch_name, arch=arch, init=os.fspath(base_model) if base_model is not None else None,
                      steps=steps, patch_size=patch_size, batch_size=batch_size, lr=lr,
                      multi_supervised=multi_supervised, device=device, out_dir=str(Path(out_dir)),
                      model_dir=str(model_dir) if model_dir is not None else None, **config)
    check_rule(intensity)
    # the Trainer applies check_outputs before it reads any data
    if noisy is not None:
        if clean is not None or pairs is not None:
            raise ValueError("give exactly one training source: clean=, pairs= or noisy=")
        from .self_supervised import SelfSupervisedTrainer

        trainer = SelfSupervisedTrainer(cfg, noisy=noisy, validation=val_source, intensity=intensity,
                                        resume=bool(resume), stop=stop, overwrite=bool(overwrite))
    else:
        trainer = Trainer(cfg, clean=clean, pairs=pairs, validation=val_source, intensity=intensity,
                          resume=bool(resume), stop=stop, overwrite=bool(overwrite))
    finished = None
    for event in trainer.run():
        if callback is not None:
            callback(event)
        if isinstance(event, Finished):
            finished = event
        elif isinstance(event, Failed):
            raise trainer.error if trainer.error is not None else RuntimeError(event.error)
    return load_model(Path(finished.model_path))
