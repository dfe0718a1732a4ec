"""The networks (MemNet, RED30, MHNet, built by name from a model card's config), their inference forms and the model files and specs."""

from __future__ import annotations

from .memnet import MemNet, MemNetConfig, euclidean_loss, multi_supervised_loss
from .mhnet import MHNet, MHNetConfig
from .rednet import RED30, RED30Config

ARCHITECTURES = {"memnet": (MemNet, MemNetConfig), "red30": (RED30, RED30Config), "mhnet": (MHNet, MHNetConfig)}


def build_model(architecture: str, config: dict | None = None):
    """Build an untrained network: ``build_model("memnet", {"blocks": 6, ...})``."""
    try:
        cls, cfg_cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; expected one of {sorted(ARCHITECTURES)}"
        ) from None
    config = dict(config or {})
    known = set(cfg_cls.__dataclass_fields__)
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"unknown {architecture} config keys {sorted(unknown)}; expected some of {sorted(known)}")
    return cls(cfg_cls(**config))


def inference_module(model):
    """The fastest exact eval-mode form of ``model`` (BN folded for MemNet; MHNet and RED30 as they are)."""
    from .fused import fuse_memnet

    model = model.eval()
    if isinstance(model, MemNet):
        return fuse_memnet(model)
    return model


def count_conv_weights(model) -> int:
    import torch.nn as nn

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


__all__ = [
    "ARCHITECTURES",
    "MemNet",
    "MemNetConfig",
    "MHNet",
    "MHNetConfig",
    "RED30",
    "RED30Config",
    "build_model",
    "count_conv_weights",
    "euclidean_loss",
    "inference_module",
    "multi_supervised_loss",
]
