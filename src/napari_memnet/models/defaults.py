"""Which bundled model a task uses on a device when none is named: the one rule.

The rule is pure (``rank``, ``choose``: model infos in, a name out); ``models.files.default_model_name``
applies it to the bundled folder. A bundled model's card carries what was measured on it:

* ``"selection"``: ``{"benchmark": "Set12 sigma 15/25/50", "psnr": ..., "command": ...}``, the
  mean PSNR of ``memnet eval`` on the task's selection benchmark (``core.tasks.Task.selection``);
* ``"speed"``: ``{"cpu": {"mp_per_s": ..., "size": 2048, "command": ...}, ...}``, ``memnet bench``
  per device kind.

The default for a task on a device kind is, among the task's bundled models that are usable
there, the one with the highest selection PSNR. A model is usable on a device kind unless its
card measured it there below ``MIN_MP_PER_S`` (the CPU: 0.1 MP/s, a 2048 x 2048 image in about
40 s; the paper's M6R6 C64 restores 0.015 MP/s there). Models whose cards carry no selection
PSNR are ranked below those that do; with none measured it is the registry's default
(``core.tasks.Task.default_model``). So on the CPU the fast model is the default, and on CUDA
the paper model becomes the default only once its card shows it ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.tasks import get_task

MIN_MP_PER_S = {"cpu": 0.1}


@dataclass(frozen=True)
class Candidate:
    """One bundled model of a task as the rule sees it on a device kind."""

    name: str
    selection_psnr: float | None
    mp_per_s: float | None  # measured on this device kind, if it was
    usable: bool


def device_kind(device=None) -> str:
    """"cpu", "cuda" or "mps" for a device name or ``torch.device`` ("auto" resolves as restore does)."""
    from ..core.devices import resolve_device

    return resolve_device(device if device is not None else "auto").type


def selection_psnr(card: dict) -> float | None:
    value = (card.get("selection") or {}).get("psnr")
    return float(value) if isinstance(value, (int, float)) else None


def measured_speed(card: dict, kind: str) -> float | None:
    value = ((card.get("speed") or {}).get(kind) or {}).get("mp_per_s")
    return float(value) if isinstance(value, (int, float)) else None


def rank(infos, task: str, kind: str) -> list[Candidate]:
    """``infos`` (``ModelInfo`` of one task) best first by the rule on device kind ``kind``."""
    get_task(task)
    out = []
    for info in infos:
        speed = measured_speed(info.card, kind)
        usable = speed is None or speed >= MIN_MP_PER_S.get(kind, 0.0)
        out.append(Candidate(info.name, selection_psnr(info.card), speed, usable))
    fallback = get_task(task).default_model
    out.sort(key=lambda c: (not c.usable, c.selection_psnr is None, -(c.selection_psnr or 0.0), c.name != fallback))
    return out


def choose(ranked: list[Candidate], task: str) -> str | None:
    """The first of ``ranked`` if it is usable and measured, else the registry's default (None for a
    task with no bundled model yet)."""
    if ranked and ranked[0].usable and ranked[0].selection_psnr is not None:
        return ranked[0].name
    return get_task(task).default_model


def kind_of(card: dict) -> str:
    """"paper MemNet M6R6 C64", "fast MemNet M4R4 C48 s2", "RED30 ...", "MHNet C16 depth 3" from a card's
    architecture and config."""
    cfg = card.get("config") or {}
    arch = card.get("architecture")
    if arch == "memnet":
        shape = f"M{cfg.get('blocks')}R{cfg.get('recursions')} C{cfg.get('channels')}"
        s = int(cfg.get("unshuffle", 1))
        return f"fast MemNet {shape} s{s}" if s > 1 else f"paper MemNet {shape}"
    if arch == "red30":
        return f"RED30 ({cfg.get('layers')}+{cfg.get('layers')} layers, C{cfg.get('channels')})"
    if arch == "mhnet":
        return f"MHNet C{cfg.get('channels')} depth {cfg.get('depth')}"
    return str(arch)


def model_choices(models, task: str, device=None) -> list[tuple[str, str]]:
    """(label, name) of ``models`` (``list_models(task)``): the bundled ones in the rule's order on
    ``device`` (the default first, marked), then user models. A label says what the model is
    (paper or fast MemNet, ...) and its selection PSNR, short enough for a dock widget:
    "memnet-fast-denoise (fast, Set12 28.51 dB, default on cpu)"."""
    kind = device_kind(device)
    bundled = [m for m in models if m.source == "bundled"]
    ranked = rank(bundled, task, kind)
    default = choose(ranked, task)
    infos = {m.name: m for m in models}  # a user model of a bundled name shadows it (list_models order)
    order = [c.name for c in ranked]
    order += [name for name in infos if name not in order]
    choices = []
    for name in order:
        info = infos[name]
        parts = [kind_of(info.card).split(" MemNet")[0] if info.card.get("architecture") == "memnet"
                 else kind_of(info.card)]
        sel = selection_psnr(info.card)
        if sel is not None:
            parts.append(f"{(info.card.get('selection') or {}).get('benchmark', '').split(' ')[0]} {sel:.2f} dB")
        if info.source != "bundled":
            parts.append(info.source)
        if name == default:
            parts.append(f"default on {kind}")
        choices.append((f"{name} ({', '.join(parts)})", name))
    return choices
