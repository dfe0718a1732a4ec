"""The run-folder policy: where a run's checkpoint, log and models go, and what
existing work a run may replace.

Existing work is never replaced by accident (``check_outputs``, the one rule
for ``fine_tune``, ``memnet train`` and the Train widget): a run whose
checkpoint or model file already exists is refused unless it resumes that run
or ``overwrite`` is given, and a bundled model's name is never given to a user
model. An overwriting run trains in ``OUT_DIR/new-run/`` (``NEW_RUN_DIR``) and
moves its checkpoint and ``events.jsonl`` over the old ones only after its
model is saved (atomically; ``replace_old_run``), so a crash or a kill mid-run
leaves the old run and model as they were. ``OUT_DIR/best/`` (``BEST_DIR``)
holds the model of the best validation so far.
"""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import CHECKPOINT_NAME
from .config import TrainConfig
from .events import EVENTS_NAME

BEST_DIR = "best"  # OUT_DIR/best/NAME.safetensors: the model of the best validation so far
NEW_RUN_DIR = "new-run"  # an overwriting run's checkpoint and log live here until its model is saved


def model_folder(model_dir) -> Path:
    """Where the final model goes: ``model_dir``, or the user model folder when it is ``None``."""
    from ..models.files import user_models_dir

    return Path(model_dir) if model_dir else user_models_dir()


def bundled_name_problem(name: str, model_dir=None) -> str | None:
    """Why ``name`` cannot be saved in ``model_dir`` (a bundled model's name there), else ``None``.

    A user model shadows the bundled model of the same name (``modelfile.find_model``), and a task's
    default is looked up by that name, so the user model folder (and the bundled folder itself) never
    takes a bundled model's name. Other folders (``memnet train --out-dir``) may."""
    from ..core.tasks import DEFAULT_MODELS
    from ..models.files import BUNDLED_DIR, user_models_dir

    bundled = set(DEFAULT_MODELS.values()) | {p.stem for p in BUNDLED_DIR.glob("*.safetensors")}
    folder = model_folder(model_dir).resolve()
    if name in bundled and folder in (user_models_dir().resolve(), BUNDLED_DIR.resolve()):
        return f"{name!r} is the name of a bundled model; a user model of that name would replace it"
    return None


def existing_outputs(name: str, out_dir=None, model_dir=None) -> tuple[Path | None, list[Path]]:
    """(the checkpoint in ``out_dir`` if there is one, the existing files of model ``name`` in its folder)."""
    ckpt = Path(out_dir) / CHECKPOINT_NAME if out_dir else None
    folder = model_folder(model_dir)
    model_files = [p for p in (folder / f"{name}.safetensors", folder / f"{name}.json") if p.exists()]
    return (ckpt if ckpt is not None and ckpt.exists() else None), model_files


def check_outputs(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> None:
    """ValueError unless a run of ``config`` may write its checkpoint and model.

    Refused: a bundled model's name in the user model folder (always); an existing checkpoint in
    ``out_dir`` unless ``resume`` (continue it) or ``overwrite``; an existing model of that name in
    its folder unless ``overwrite``, or ``resume`` with the run's checkpoint to continue."""
    bundled = bundled_name_problem(config.name, config.model_dir)
    if bundled:
        raise ValueError(f"{bundled}: choose another name")
    ckpt, model_files = existing_outputs(config.name, config.out_dir, config.model_dir)
    if overwrite or (resume and ckpt is not None) or (ckpt is None and not model_files):
        return
    files = ", ".join(str(p) for p in ([ckpt] if ckpt else []) + model_files)
    if ckpt is not None:
        raise ValueError(f"a run named {config.name!r} already exists ({files}): pass resume=True (--resume) to "
                         "continue it, overwrite=True (--overwrite) to replace it once the new model is saved, "
                         "or choose another name")
    nothing = (f"there is no checkpoint in {config.out_dir} for resume=True to continue" if config.out_dir
               else "resume=True needs the run's out_dir and checkpoint")
    raise ValueError(f"a model named {config.name!r} already exists ({files}): pass overwrite=True (--overwrite) "
                     f"to replace it once the new model is saved, or choose another name ({nothing})")


def replace_old_run(staging: Path, out_dir: Path) -> None:
    """Move an overwriting run's checkpoint and log from ``staging`` (``NEW_RUN_DIR``) over the old run's."""
    for name in (CHECKPOINT_NAME, EVENTS_NAME):
        if (staging / name).exists():
            os.replace(staging / name, out_dir / name)
    try:
        staging.rmdir()
    except OSError:  # something else in there (not ours): leave it
        pass
