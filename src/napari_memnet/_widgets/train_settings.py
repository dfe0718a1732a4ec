"""The Train widget's settings -> ``TrainConfig`` keyword arguments (pure, no Qt).

The widget's defaults and "auto" rules live here:

* learning rate ``auto``: the training engine's default (``TrainConfig.resolved_lr``:
  Adam 1e-2 from scratch, a hundredth of it when fine-tuning);
* validation every a tenth of the steps when 0, a checkpoint every quarter;
* synthetic levels come from the "levels" field, SR pair levels from the pairs'
  scale, real pairs need none;
* a network from scratch is a MemNet (M, R, C, s) or an MHNet (C; the rest of
  its shape is ``training.config.DEFAULT_ARCH``'s small CPU configuration).
"""

from __future__ import annotations

from . import train_data as td

ARCH_CHOICES = [("MemNet", "memnet"), ("MHNet (for deblurring)", "mhnet")]
WIDGET_CHANNELS = {"memnet": 48, "mhnet": 16}  # the channels field's value for each architecture


def parse_lr(text: str) -> float | None:
    """``"auto"`` -> None (the engine's default: ``TrainConfig.resolved_lr``, a hundredth of the
    from-scratch rate when fine-tuning); ``"3e-4"`` -> 3e-4."""
    text = str(text).strip().lower()
    if text in ("", "auto"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"learning rate {text!r}: expected a number such as 1e-4, or 'auto'") from None
    if not value > 0:
        raise ValueError(f"learning rate must be positive, got {text!r}")
    return value


def config_kwargs(request: td.DataRequest, *, task: str, name: str, base: str | None, steps: int,
                  patch_size: int, batch_size: int, lr_text: str = "auto", levels_text: str = "",
                  architecture: str = "memnet",
                  arch: dict | None = None, multi_supervised: bool = True, device: str = "auto",
                  seed: int = 0, validate_every: int = 0, out_dir: str) -> dict:
    """Keyword arguments for ``TrainConfig`` (which checks them and names any problem)."""
    from ..models.files import check_model_name

    name = check_model_name(str(name).strip())
    if base is not None and base == name:
        raise ValueError(f"'save as' must differ from the base model name {base!r} (it would overwrite it)")
    if request.levels is not None:
        levels = request.levels
    elif request.source in (td.SOURCE_CLEAN_LAYERS, td.SOURCE_CLEAN_FOLDER):
        levels = td.parse_levels(levels_text, task)
    else:
        levels = ()
    steps = int(steps)
    arch = dict(arch or {})
    if architecture != "memnet":  # M, R and s are MemNet's; the other networks take only C from the form
        arch = {k: v for k, v in arch.items() if k == "channels"}
    return dict(task=task, levels=levels, name=name, init=base, architecture=architecture,
                arch={} if base else arch, steps=steps, patch_size=int(patch_size),
                batch_size=int(batch_size), lr=parse_lr(lr_text),
                multi_supervised=bool(multi_supervised), device=device, seed=int(seed), out_dir=str(out_dir),
                val_count=0, val_fraction=None if request.validation is not None else request.val_fraction,
                validate_every=int(validate_every) or max(1, steps // 10),
                checkpoint_every=max(1, steps // 4), log_every=10)
