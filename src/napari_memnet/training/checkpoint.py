"""Training checkpoints: ONE safetensors file, written atomically.

Tensors (model weights and buffers, optimizer buffers, the patch sampler's torch
generator) are safetensors tensors; everything else (step, config, scheduler,
optimizer hyper-parameters, the sampler's numpy generator) is a JSON document
stored in the file's metadata. Loading never unpickles anything.

The process-wide random generators (python's, numpy's, torch's) are neither saved
nor restored: training draws only from its own generators (the sampler's; the
initial weights from ``core.seeding.seeded_torch``), so a resumed run continues
exactly without resetting a caller's random state. Format 1 files, which held
those states, load as before; the states in them are ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..core.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_FORMAT = 2  # 2: no process-wide RNG states (format 1 had them; still read)
_META_KEY = "napari_memnet_checkpoint"


def _split_optimizer(optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    meta_state, tensors = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                meta_state.setdefault(str(pid), {})[key] = value
    return {"param_groups": sd["param_groups"], "state": meta_state}, tensors


def _join_optimizer(meta: dict, tensors: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, st in meta.get("state", {}).items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: str | os.PathLike, *, model, optimizer, step: int, config: dict,
                    sampler=None, extra: dict | None = None, ema=None) -> Path:
    """Write everything needed to continue the run to ``path`` (atomically); ``ema``: a
    ``WeightAverage`` whose averaged weights are kept too."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_meta, optim_tensors = _split_optimizer(optimizer)
    tensors.update(optim_tensors)
    meta = {"format": CHECKPOINT_FORMAT, "step": int(step), "config": config, "optimizer": optim_meta,
            "extra": extra or {}}
    if hasattr(model, "architecture") and hasattr(model, "config"):  # what network_from_checkpoint builds
        meta["network"] = {"architecture": model.architecture, "config": model.config.to_dict()}
    if sampler is not None:
        s_meta, s_tensors = sampler.state_dict()
        meta["sampler"] = s_meta
        tensors.update({f"sampler.{k}": v for k, v in s_tensors.items()})
    if ema is not None:
        meta["ema_updates"] = ema.updates
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    return path


def _prefixed(tensors: dict, prefix: str) -> dict:
    """The tensors whose names start with ``prefix``, under their names without it."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensors, meta) of a checkpoint file; ValueError naming the file if unusable."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(_META_KEY)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from None
    if raw is None:
        raise ValueError(f"{path}: not a napari-memnet training checkpoint (no {_META_KEY} metadata)")
    meta = json.loads(raw)
    if meta.get("format", 0) > CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')} is newer than this napari-memnet reads")
    return tensors, meta


def load_checkpoint(path, *, model, optimizer=None, sampler=None, ema=None) -> dict:
    """Fill ``model``/``optimizer``/``sampler``/``ema`` from ``path``; return the JSON part.

    An ``ema`` given for a checkpoint without one starts from the checkpoint's weights."""
    tensors, meta = read_checkpoint(path)
    state = _prefixed(tensors, "model.")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: checkpoint does not fit this network: {str(exc).splitlines()[0]}") from None
    if ema is not None:
        ema_state = _prefixed(tensors, "ema.")
        ema.load_state_dict(ema_state or state, int(meta.get("ema_updates", 0)))
    if optimizer is not None:
        optimizer.load_state_dict(_join_optimizer(meta["optimizer"], tensors))
    if sampler is not None and "sampler" in meta:
        sampler.load_state_dict(meta["sampler"], _prefixed(tensors, "sampler."))
    return meta


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file with this module's checkpoint metadata (reads the header only)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file() or path.suffix != ".safetensors":
        return False
    try:
        with safe_open(str(path), framework="pt") as fh:
            return _META_KEY in (fh.metadata() or {})
    except (SafetensorError, OSError):
        return False


def network_from_checkpoint(path: str | os.PathLike):
    """(network, meta): the run's network as its checkpoint holds it, with the weight average
    (``ema.*``) where the run kept one (the weights it validates and saves), else the trained ones;
    BatchNorm statistics as training left them (a run's closing recalibration is in its model file only).

    The architecture is the checkpoint's ``network`` record; a checkpoint written before it was
    kept gives it through its training config, which holds it unless the run started from a model
    (``init``): that one is refused with a ValueError that says so."""
    from ..models import build_model

    tensors, meta = read_checkpoint(path)
    record = meta.get("network")
    if record is None:
        from .config import TrainConfig

        cfg = TrainConfig.from_dict(meta["config"])
        if cfg.init:
            raise ValueError(f"{path}: this checkpoint predates the network record and its run started from "
                             f"{cfg.init!r}, so its architecture is unknown; resume the run for one step "
                             f"(--resume --steps {int(meta['step']) + 1}) to write one that has it")
        record = {"architecture": cfg.architecture, "config": cfg.resolved_arch}
    net = build_model(record["architecture"], record["config"])
    state = _prefixed(tensors, "ema.") or _prefixed(tensors, "model.")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: its weights do not fit its recorded network: {str(exc).splitlines()[0]}") from None
    return net, meta
