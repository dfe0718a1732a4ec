"""Geometric self-ensemble: the network's outputs under the dihedral transforms, averaged.

``ensemble = n`` (1..8) runs the network on the first n of the 8 dihedral
transforms of its input (rotations by 0, 90, 180 and 270 degrees, then the
same after a left-right flip), undoes each transform on its output and
averages the n outputs. n = 1 is the plain network; n = 8 costs 8 times the
time and adds 0.06-0.10 dB to the fast denoiser (docs/results.md, "Self-ensemble").

A space-to-depth network (alignment a > 1) sees its input on the a-grid that
starts at the top-left corner. A rotated window has its grid start at another
corner, so each window is first padded at the bottom and right to a multiple
of a, by edge replication as the network pads itself. Tile windows start on
the a-grid and all but the last in a row or column also end on it; the last
ends at the image border, where the whole image is padded the same way. So
every transform sees the same grid in a tile as in the whole image, and tiled
still equals untiled.
"""

from __future__ import annotations

from numbers import Integral

MAX_MEMBERS = 8


def check_ensemble(ensemble) -> int:
    """The number of ensemble members, an integer 1..8, or ValueError."""
    if isinstance(ensemble, bool) or not isinstance(ensemble, Integral) or not 1 <= ensemble <= MAX_MEMBERS:
        raise ValueError(f"ensemble must be an integer 1..{MAX_MEMBERS} (the number of dihedral transforms "
                         f"averaged; 1 = off), got {ensemble!r}")
    return int(ensemble)


def label(name: str, ensemble: int) -> str:
    """How a model run with ``ensemble`` members is named in records and reports: "NAME (x8 self-ensemble)"."""
    return name if ensemble == 1 else f"{name} (x{ensemble} self-ensemble)"


def transform(x, k: int):
    """Dihedral transform ``k`` (0..7) of the last two axes of a tensor: rotate by k * 90 degrees,
    then flip left-right when k >= 4."""
    import torch

    y = torch.rot90(x, k % 4, dims=(-2, -1)) if k % 4 else x
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def undo(y, k: int):
    """The inverse of ``transform(., k)``."""
    import torch

    if k >= 4:
        y = torch.flip(y, dims=(-1,))
    return torch.rot90(y, -(k % 4), dims=(-2, -1)) if k % 4 else y


def ensemble_forward(run, x, members: int, align: int = 1, cancel=None):
    """The mean of ``undo(run(transform(x, k)), k)`` for k < ``members``, float32, the shape of ``x``.

    ``run`` maps an (N, C, H, W) tensor to one of the same H and W; ``x`` is
    padded (edge replication, bottom and right) to multiples of ``align``
    first and the result cropped back. ``cancel`` is checked before each member."""
    import torch.nn.functional as F

    from .events import check_cancel

    h, w = x.shape[-2:]
    ph, pw = -h % align, -w % align
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    total = None
    for k in range(members):
        check_cancel(cancel)
        y = undo(run(transform(x, k)), k).float()
        total = y if total is None else total.add_(y)
    return total.div_(members)[..., :h, :w]
