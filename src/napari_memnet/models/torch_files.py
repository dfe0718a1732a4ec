"""Reading a ``.pt``/``.pth`` weights file from a user path, never unpickling.

The file is read only with ``torch.load(weights_only=True)``. It may hold a bare state dict or one
under ``model``/``state_dict``/``network``; without a ``.json`` card beside it, the architecture and
its config are inferred from the keys and shapes (a MemNet of any M, R, C and space-to-depth factor,
or a RED30; an MHNet needs its card). Every problem is a ``ValueError`` that says what was expected;
``models.files`` names the file in its ``ModelFileError``.
"""

from __future__ import annotations

import pickle
from pathlib import Path


def read_state_dict(path: Path) -> dict:
    """The tensors of a PyTorch weights file (ValueError when it is unreadable or holds anything else)."""
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            "refused to load: the file holds Python objects other than tensors "
            f"(only weights_only=True loading is allowed): {str(exc).splitlines()[0]}"
        ) from None
    except Exception as exc:  # truncated zip, not a torch file...
        raise ValueError(f"not a readable PyTorch weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "network"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("expected a state dict of tensors")
    return obj


def _memnet_input(inner: int) -> tuple[int, int]:
    """(in_channels, unshuffle s) of a MemNet whose f_ext sees ``inner`` = in_channels * s * s channels.

    Gray (1) and RGB (3) images are what MemNets restore: 1 and 3 are the paper's net, s*s a gray fast
    MemNet, 3*s*s an RGB one; any other count needs the model card."""
    for in_channels in (1, 3):
        s = round((inner / in_channels) ** 0.5)
        if s >= 1 and in_channels * s * s == inner:
            return in_channels, s
    raise ValueError(f"a MemNet whose first conv takes {inner} channels is neither gray nor RGB "
                     "(1 or 3 times s*s for a space-to-depth factor s): it needs its .json model card")


def infer_architecture(state: dict) -> tuple[str, dict]:
    """Architecture and config from the keys and shapes of a bare state dict."""
    if "extract.2.weight" in state:
        w = state["extract.2.weight"]
        blocks = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        recursions = len({k.split(".")[4] for k in state if k.startswith("blocks.0.recursive.bn_a.")})
        in_channels, unshuffle = _memnet_input(int(w.shape[1]))
        return "memnet", {
            "in_channels": in_channels, "channels": int(w.shape[0]), "blocks": blocks,
            "recursions": recursions, "multi_supervised": "branch_weights" in state,
            "shared_recursions": "blocks.0.recursive.conv_a.weight" in state, "unshuffle": unshuffle,
        }
    if "convs.0.weight" in state:
        w = state["convs.0.weight"]
        return "red30", {"in_channels": int(w.shape[1]), "channels": int(w.shape[0]),
                         "layers": len({k.split(".")[1] for k in state if k.startswith("convs.")})}
    if "attention.qkv.weight" in state:  # the attention's head count is not in the shapes
        raise ValueError("an MHNet state dict needs its .json model card (the weights alone do not say its heads)")
    raise ValueError("state dict is neither a MemNet, a RED30 nor an MHNet (unknown keys)")
