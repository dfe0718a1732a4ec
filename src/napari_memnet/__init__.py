"""napari-memnet: image restoration with MemNet (ICCV 2017) and RED30.

The public API is imported lazily so that ``import napari_memnet`` stays fast
and does not import torch until a function that needs it is called.
"""

from ._version import __version__

_LAZY = {
    "restore": ("napari_memnet.api", "restore"),
    "Cancelled": ("napari_memnet.restoration.events", "Cancelled"),
    "fine_tune": ("napari_memnet.training.api", "fine_tune"),
    "list_models": ("napari_memnet.models.files", "list_models"),
    "load_model": ("napari_memnet.models.files", "load_model"),
    "save_model": ("napari_memnet.models.files", "save_model"),
    "ModelFileError": ("napari_memnet.models.files", "ModelFileError"),
    "export_bioimageio": ("napari_memnet.zoo.export", "export_bioimageio"),
    "import_bioimageio": ("napari_memnet.zoo.install", "import_bioimageio"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_memnet' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
