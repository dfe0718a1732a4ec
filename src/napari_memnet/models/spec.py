"""A model as a small picklable description (``ModelSpec``) that any process can load.

Models never travel to dask workers as pickled ``nn.Module`` objects. A
``ModelSpec`` names a model FILE (absolute path, so workers need not share
the parent's environment variables) or, for a network that only lives in
memory, carries its weights as safetensors bytes plus its card; ``key``
identifies the weights (their sha256) and is what engine caches are keyed on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModelSpec", "model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """A picklable, small description of a model that any process can load.

    Exactly one of ``path`` (a ``.safetensors``/``.pt`` model file) or
    ``weights`` (safetensors bytes, with ``card``) is set. ``key`` identifies
    the weights (their sha256) and is what worker caches are keyed on."""

    key: str
    name: str
    receptive_radius: int
    in_channels: int
    task: str | None
    path: str | None = None
    weights: bytes | None = field(default=None, repr=False)
    card: dict | None = field(default=None, repr=False)
    alignment: int = 1  # blocks start on multiples of this (a space-to-depth network's factor)

    def load(self):
        """Load the ``RestorationModel`` this spec describes (no cache)."""
        from .files import RestorationModel, load_model

        if self.path is not None:
            return load_model(self.path)
        from safetensors.torch import load as load_bytes

        from . import build_model

        network = build_model(self.card["architecture"], self.card["config"])
        network.load_state_dict(load_bytes(self.weights), strict=True)
        return RestorationModel(self.name, dict(self.card), network.eval(), None, "memory")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_spec(model=None, task: str | None = None, device=None) -> ModelSpec:
    """A ``ModelSpec`` for a model name, a path, a ``RestorationModel``, a
    network, or ``None`` (the task's default on ``device``). Loads the model once
    here (to validate it and read its receptive radius)."""
    from .files import _sha256, load_model

    if isinstance(model, ModelSpec):
        return model
    loaded = load_model(model, task=task, device=device)
    if loaded.path is not None and Path(loaded.path).exists():
        path = Path(loaded.path).resolve()
        digest = loaded.card.get("weights_sha256") or _sha256(path)
        return ModelSpec(key=f"{digest}:{path.suffix}", name=loaded.name,
                         receptive_radius=loaded.receptive_radius, in_channels=loaded.in_channels,
                         task=loaded.task, path=str(path), alignment=loaded.alignment)
    from safetensors.torch import save as save_bytes

    state = {k: v.detach().to("cpu").contiguous() for k, v in loaded.network.state_dict().items()}
    data = save_bytes(state)
    return ModelSpec(key=_sha256_bytes(data), name=loaded.name, receptive_radius=loaded.receptive_radius,
                     in_channels=loaded.in_channels, task=loaded.task, weights=data, card=dict(loaded.card),
                     alignment=loaded.alignment)
