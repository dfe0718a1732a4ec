"""Model files: ``NAME.safetensors`` (weights) + ``NAME.json`` (the model card).

Loading never unpickles. A ``.pt``/``.pth`` file from a user path is read only
with ``torch.load(weights_only=True)`` (``models.torch_files``); anything wrong (missing or unexpected
keys, wrong shapes, a truncated file, a card that does not match its weights,
a newer format version) raises ``ModelFileError`` naming the file and the
problem.

Bundled models live in ``napari_memnet/weights/``; user models in the
platformdirs user data folder (``NAPARI_MEMNET_MODELS_DIR`` overrides it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_path, atomic_write_text
from ..core.tasks import get_task
from .torch_files import infer_architecture, read_state_dict

FORMAT_VERSION = 1
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"  # napari_memnet/weights/
USER_DIR_ENV = "NAPARI_MEMNET_MODELS_DIR"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ModelFileError(ValueError):
    """A model file or card that cannot be used; the message names the file."""


@dataclass
class ModelInfo:
    """What ``list_models()`` reports about one model, without loading weights."""

    name: str
    task: str
    architecture: str
    source: str  # "bundled" or "user"
    path: Path  # the .safetensors file
    card: dict = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "architecture": self.architecture,
            "source": self.source,
            "path": str(self.path),
            "levels": self.card.get("levels"),
            "metrics": self.card.get("metrics", []),
        }


@dataclass
class RestorationModel:
    """A loaded network with its card. ``network`` is the trainable module."""

    name: str
    card: dict
    network: Any  # torch.nn.Module
    path: Path | None = None
    source: str = "memory"

    @property
    def task(self) -> str | None:
        return self.card.get("task")

    @property
    def architecture(self) -> str:
        return self.card["architecture"]

    @property
    def receptive_radius(self) -> int:
        return int(self.network.receptive_radius)

    @property
    def in_channels(self) -> int:
        return int(self.network.in_channels)

    @property
    def alignment(self) -> int:
        """Tiles and chunks start on multiples of this (1 but for a space-to-depth network)."""
        return int(getattr(self.network, "alignment", 1))

    def inference_module(self):
        """The eval-mode form used for restoration (BatchNorm folded)."""
        from . import inference_module

        return inference_module(self.network)


def user_models_dir() -> Path:
    env = os.environ.get(USER_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-memnet", appauthor=False)) / "models"


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid model name {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_card(network, *, name: str, task: str | None, **fields) -> dict:
    """A model card for ``network`` with the architecture facts filled in."""
    card = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "architecture": network.architecture,
        "config": network.config.to_dict(),
        "task": task,
        "input": {
            "channels": "gray" if network.in_channels == 1 else f"{network.in_channels} channels",
            "intensity_scale": "0..1 (8-bit value / 255)",
        },
        "receptive_radius": int(network.receptive_radius),
    }
    card.update(fields)
    return card


def save_model(network, name: str, *, task: str | None, directory: str | os.PathLike | None = None,
               overwrite: bool = True, **card_fields) -> ModelInfo:
    """Save ``network`` as ``NAME.safetensors`` + ``NAME.json`` (both atomically).

    ``directory`` defaults to the user model folder. Extra keyword arguments go
    into the card (``levels``, ``training``, ``metrics``, ``description``...)."""
    from safetensors.torch import save_file

    check_model_name(name)
    if task is not None:
        get_task(task)
    folder = Path(directory) if directory is not None else user_models_dir()
    weights = folder / f"{name}.safetensors"
    card_path = folder / f"{name}.json"
    if not overwrite and (weights.exists() or card_path.exists()):
        raise FileExistsError(f"model {name!r} already exists in {folder}")
    state = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    card = make_card(network, name=name, task=task, **card_fields)
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": "napari-memnet", "format_version": str(FORMAT_VERSION)})
        card["weights_sha256"] = _sha256(tmp)
    atomic_write_text(card_path, json.dumps(card, indent=2, sort_keys=False) + "\n")
    return ModelInfo(name, task or "", card["architecture"], "user" if directory is None else "file", weights, card)


def update_card(weights_or_card: str | os.PathLike, **fields) -> dict:
    """Replace top-level fields of an existing model card (atomically).

    The weights are untouched, so their checksum in the card stays valid; used
    to record benchmark results measured after training."""
    path = Path(weights_or_card)
    card_path = path.with_suffix(".json")
    card = read_card(card_path)
    protected = {"format_version", "architecture", "config", "weights_sha256"}
    bad = protected & set(fields)
    if bad:
        raise ValueError(f"update_card cannot change {sorted(bad)}; save the model again instead")
    card.update(fields)
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return card


# ---------------------------------------------------------------------------- reading
def read_card(card_path: Path) -> dict:
    try:
        card = json.loads(Path(card_path).read_text("utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{card_path}: model card not found (every .safetensors needs its .json card)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{card_path}: model card is not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"{card_path}: model card must be a JSON object")
    version = card.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{card_path}: model card has no integer 'format_version'")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{card_path}: format version {version} is newer than this napari-memnet supports "
            f"({FORMAT_VERSION}); upgrade napari-memnet"
        )
    for key in ("architecture", "config"):
        if key not in card:
            raise ModelFileError(f"{card_path}: model card lacks {key!r}")
    return card


def _scan(folder: Path, source: str) -> list[ModelInfo]:
    found = []
    if not folder.is_dir():
        return found
    for card_path in sorted(folder.glob("*.json")):
        weights = card_path.with_suffix(".safetensors")
        if not weights.exists():
            continue
        try:
            card = read_card(card_path)
        except ModelFileError:
            continue  # listed models must be loadable; broken ones are skipped
        found.append(ModelInfo(card_path.stem, card.get("task") or "", card["architecture"], source, weights, card))
    return found


def list_models(task: str | None = None) -> list[ModelInfo]:
    """Bundled models first, then user models; optionally only one task's."""
    models = _scan(BUNDLED_DIR, "bundled") + _scan(user_models_dir(), "user")
    if task is not None:
        models = [m for m in models if m.task == task]
    return models


def _build_and_fill(path: Path, card: dict, state: dict):
    from . import build_model

    try:
        network = build_model(card["architecture"], card["config"])
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: card describes an invalid network: {exc}") from None
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise ModelFileError(f"{path}: weights do not match a {card['architecture']} {card['config']}: " + "; ".join(parts))
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelFileError(
                f"{path}: weight {key!r} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    network.load_state_dict(state, strict=True)
    return network.eval()


def _load_safetensors(path: Path, card_path: Path | None = None, source: str = "path") -> RestorationModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card_path = card_path or path.with_suffix(".json")
    card = read_card(card_path)
    digest = card.get("weights_sha256")
    if digest and digest != _sha256(path):
        raise ModelFileError(f"{path}: weights do not match their card {card_path.name} (sha256 differs)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file ({exc})") from None
    network = _build_and_fill(path, card, state)
    return RestorationModel(card.get("name", path.stem), card, network, path, source)


def _load_torch_file(path: Path) -> RestorationModel:
    try:
        state = read_state_dict(path)
    except ValueError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    card_path = path.with_suffix(".json")
    if card_path.exists():
        card = read_card(card_path)
    else:
        try:
            arch, config = infer_architecture(state)
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        card = {"format_version": FORMAT_VERSION, "name": path.stem, "architecture": arch, "config": config,
                "task": None}
    network = _build_and_fill(path, card, state)
    return RestorationModel(card.get("name", path.stem), card, network, path, "path")


def default_model_name(task: str, device=None) -> str | None:
    """The bundled model ``task`` uses on ``device`` ("auto" when None) when none is named:
    ``models.defaults``' rule over the bundled cards (None: the task has no bundled model yet)."""
    from .defaults import choose, device_kind, rank

    bundled = [m for m in list_models(task) if m.source == "bundled"]
    return choose(rank(bundled, task, device_kind(device)), task)


def find_model(name: str) -> ModelInfo:
    for info in reversed(list_models()):  # user models shadow bundled ones of the same name
        if info.name == name:
            return info
    known = ", ".join(m.name for m in list_models()) or "none"
    raise ModelFileError(f"no model named {name!r} (known models: {known})")


def load_model(name_or_path, task: str | None = None, device=None) -> RestorationModel:
    """Load a model by name (bundled or user), by path, or pass a loaded one through.

    ``None`` with a ``task`` loads that task's default on ``device`` ("auto" when None): the one
    rule of ``models.defaults``."""
    if isinstance(name_or_path, RestorationModel):
        return name_or_path
    if name_or_path is None:
        if task is None:
            raise ValueError("load_model needs a model name, a path, or a task for the default model")
        name_or_path = default_model_name(get_task(task).name, device)
        if name_or_path is None:
            raise ModelFileError(
                f"no bundled model for task {task!r} yet: train one (`memnet train --task {task} "
                f"--clean-dir IMAGES --name NAME --install`, or the Train widget) and name it: "
                f"model=NAME (Python), --model NAME (memnet restore, memnet eval)")
        try:
            find_model(name_or_path)
        except ModelFileError:
            raise ModelFileError(
                f"no bundled model for task {task!r} ({name_or_path!r} is not installed); pass model=... "
                f"or train one: `memnet train --task {task}`"
            ) from None
    if hasattr(name_or_path, "state_dict") and hasattr(name_or_path, "architecture"):
        net = name_or_path
        card = make_card(net, name="unsaved", task=task)
        return RestorationModel("unsaved", card, net, None, "memory")
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = path.suffix in {".safetensors", ".pt", ".pth", ".json"} or os.sep in text
    if looks_like_path:
        if not path.exists():
            raise ModelFileError(f"{path}: model file not found")
        if path.suffix == ".json":
            path = path.with_suffix(".safetensors")
        if path.suffix == ".safetensors":
            return _load_safetensors(path)
        if path.suffix in {".pt", ".pth"}:
            return _load_torch_file(path)
        raise ModelFileError(f"{path}: unsupported model file type (expected .safetensors, .pt or .pth)")
    info = find_model(text)
    return _load_safetensors(info.path, source=info.source)
