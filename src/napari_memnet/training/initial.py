"""The network a training run starts from (``TrainConfig.init`` and the architecture settings).

* no ``init``: a fresh network of ``architecture`` / ``resolved_arch``;
* ``init`` a model (bundled or user name, or a model file): a copy of its network;
* ``init`` another run's ``checkpoint.safetensors``: that run's network with its weight average
  (``checkpoint.network_from_checkpoint``), not its optimizer, schedule or step;

and with ``init`` and ``arch`` blocks/recursions, that MemNet grown to them (``models/grow.py``:
computing what it did). Returns the network and the name the card records as its base model.
"""

from __future__ import annotations

from .checkpoint import is_checkpoint, network_from_checkpoint
from .config import TrainConfig


def initial_network(cfg: TrainConfig):
    """(network, base model name or None) for a run of ``cfg``; ValueError for a base it cannot train."""
    from ..models import build_model

    if not cfg.init:
        return build_model(cfg.architecture, cfg.resolved_arch), None
    if is_checkpoint(cfg.init):
        net, meta = network_from_checkpoint(cfg.init)
        name = f"{cfg.init} (step {meta['step']})"
    else:
        from ..models.files import load_model

        loaded = load_model(cfg.init)
        net, name = loaded.network, loaded.name
    if net.in_channels != 1:
        raise ValueError(f"base model {cfg.init!r} has {net.in_channels} input channels; training uses 1 (gray / Y)")
    if cfg.arch:
        from ..models.grow import grow_memnet

        net = grow_memnet(net, cfg.arch.get("blocks"), cfg.arch.get("recursions"), cfg.arch.get("shared_recursions"))
    return net, name
