"""``import_bioimageio``: install a bioimage.io package of one of our
architectures as a user model (``NAME.safetensors`` + ``NAME.json`` in the user
model folder, ``models/files.py``).

Nothing from the package is executed or unpickled: the architecture is ours
(named in the package's ``config.napari_memnet`` section, which
``zoo/export.py`` writes, or recognised from the ``pytorch_state_dict``
callable and its keyword arguments), the package's architecture file is never
imported, and the weights are read with ``torch.load(weights_only=True)``. A
package of another architecture is refused with ``ModelFileError``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from ..models import ARCHITECTURES
from ..models.files import ModelFileError, check_model_name, list_models
from .export import require_bioimageio

SR_SUFFIX = "OnBicubicInput"  # zoo/source.py: the SR wrapper's class name ends so
_CARD_FIELDS_KEPT_BY_SAVE = {"format_version", "name", "architecture", "config", "task", "input", "receptive_radius",
                             "weights_sha256"}


def _from_callable(callable_name: str, kwargs: dict) -> tuple[str, dict] | None:
    """(architecture, config) for a package built from one of our classes, else None."""
    base = callable_name[: -len(SR_SUFFIX)] if callable_name.endswith(SR_SUFFIX) else callable_name
    for arch, (cls, cfg_cls) in ARCHITECTURES.items():
        if cls.__name__ == base:
            fields = set(cfg_cls.__dataclass_fields__)
            return arch, {k: v for k, v in kwargs.items() if k in fields}
    return None


def _read_weights(descr, package: str):
    import torch
    from bioimageio.spec.utils import download

    reader = download(descr.weights.pytorch_state_dict.source)
    data = reader.read()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{package}: refused the weights: not a plain state dict of tensors "
                             f"(loaded only with weights_only=True): {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{package}: the pytorch_state_dict weights are not a state dict of tensors")
    return state


def import_bioimageio(package, *, name: str | None = None, directory=None, overwrite: bool = False):
    """Install the bioimage.io package ``package`` (a .zip or a folder with rdf.yaml) as a user model.

    ``name`` defaults to the exported model's name (``NAME-bioimageio`` where a bundled
    model has that name). Returns the ``ModelInfo`` of the saved model."""
    require_bioimageio()
    from bioimageio.spec import InvalidDescr, load_model_description
    from bioimageio.spec.model import v0_5

    from ..models.files import _build_and_fill, save_model

    package = os.fspath(package)
    if not Path(package).exists():
        raise ModelFileError(f"{package}: no such package")
    descr = load_model_description(package, format_version="latest", perform_io_checks=True)  # 0.4 -> 0.5
    if isinstance(descr, InvalidDescr) or not isinstance(descr, v0_5.ModelDescr):
        raise ModelFileError(f"{package}: not a valid bioimage.io model package (format 0.5): "
                             f"{descr.validation_summary.format()[:2000]}")
    weights = descr.weights.pytorch_state_dict
    if weights is None:
        raise ModelFileError(f"{package}: has no pytorch_state_dict weights; napari-memnet installs only those")
    section = dict((descr.config.model_extra or {}).get("napari_memnet") or {})
    card = dict(section.get("card") or {})
    arch_callable = str(weights.architecture.callable)
    found = _from_callable(arch_callable, dict(weights.architecture.kwargs))
    if card.get("architecture") in ARCHITECTURES:
        found = (card["architecture"], dict(card.get("config") or {}))
    if found is None:
        raise ModelFileError(
            f"{package}: its network is {arch_callable!r}, not one of napari-memnet's architectures "
            f"({', '.join(sorted(ARCHITECTURES))}); napari-memnet can only install packages of its own "
            "architectures (it runs no code from a package)")
    architecture, config = found
    card.setdefault("task", _task_from_tags(descr))
    state = _read_weights(descr, package)
    network = _build_and_fill(Path(package), {"architecture": architecture, "config": config}, state)
    name = check_model_name(name or _default_name(card.get("name") or descr.name))
    fields = {k: v for k, v in card.items() if k not in _CARD_FIELDS_KEPT_BY_SAVE}
    fields["imported_from"] = {"bioimageio_package": Path(package).name, "package_name": descr.name,
                               "scale": section.get("scale")}
    return save_model(network, name, task=card.get("task"), directory=directory, overwrite=overwrite, **fields)


def _task_from_tags(descr) -> str | None:
    from ..core.tasks import TASK_NAMES

    tags = set(descr.tags)
    return next((t for t in TASK_NAMES if t in tags), None)


def _default_name(exported: str) -> str:
    base = "".join(c if c.isalnum() or c in "._-" else "-" for c in exported).strip("-.") or "bioimageio-model"
    bundled = {m.name for m in list_models() if m.source == "bundled"}
    return f"{base}-bioimageio" if base in bundled else base
