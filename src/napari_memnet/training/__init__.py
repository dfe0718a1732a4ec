"""Training: data, degradations on the fly, the trainer (a generator of typed events), run folders, checkpoints and ``fine_tune``."""

# torch is imported only when a submodule that needs it is imported (the names below load lazily)

from __future__ import annotations

_LAZY = {
    "TrainConfig": ("config", "TrainConfig"),
    "load_config": ("config", "load_config"),
    "Trainer": ("trainer", "Trainer"),
    "fine_tune": ("api", "fine_tune"),
    "prepare_data": ("data", "prepare_data"),
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
