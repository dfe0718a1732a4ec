"""Which array axes are the image plane, the channels and the stack.

An axes string names every axis of an array, one letter each, e.g. ``"YX"``,
``"ZYX"``, ``"TZYX"``, ``"YXC"``, ``"TZCYX"``. ``Y`` and ``X`` (the plane)
are required; ``C`` (or ``S``, tifffile's "samples") is the channel axis;
every other letter (``T``, ``Z``, ``I``, ``Q``...) is a stack axis whose
planes are restored one by one. Letters are case-insensitive and unique.

Defaults when ``axes`` is not given (``default_axes``):

=====  ===================================  ========
ndim   shape                                axes
=====  ===================================  ========
2      any                                  ``YX``
3      last dim 3 or 4                      ``YXC``  (RGB / RGBA)
3      otherwise                            ``ZYX``
4      last dim 3 or 4                      ``ZYXC``
4      otherwise                            ``TZYX``
5      last dim 3 or 4                      ``TZYXC``
5      otherwise                            ``TZCYX`` (ImageJ hyperstack order)
=====  ===================================  ========

A channel axis is treated as RGB (3) or RGBA (4) colour when it is the LAST
axis and has 3 or 4 entries: MemNet restores the luma (Y of YCbCr) and
carries the chroma; alpha is left as it was. Any other channel axis is a set
of independent channels, each restored on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DIMS = 5
CHANNEL_LETTERS = ("C", "S")


@dataclass(frozen=True)
class Layout:
    """The parsed axes of one array."""

    axes: str  # upper-case, one letter per axis, channel axis written as given
    shape: tuple[int, ...]

    @property
    def y(self) -> int:
        return self.axes.index("Y")

    @property
    def x(self) -> int:
        return self.axes.index("X")

    @property
    def channel(self) -> int | None:
        for letter in CHANNEL_LETTERS:
            if letter in self.axes:
                return self.axes.index(letter)
        return None

    @property
    def is_rgb(self) -> bool:
        """A trailing channel axis of 3 (RGB) or 4 (RGBA) entries."""
        c = self.channel
        return c is not None and c == len(self.axes) - 1 and self.shape[c] in (3, 4)

    @property
    def has_alpha(self) -> bool:
        return self.is_rgb and self.shape[self.channel] == 4

    @property
    def stack_axes(self) -> tuple[int, ...]:
        """Axes that are neither Y, X nor the channel axis."""
        skip = {self.y, self.x, self.channel}
        return tuple(i for i in range(len(self.axes)) if i not in skip)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.shape[self.y], self.shape[self.x]


def default_axes(shape: tuple[int, ...]) -> str:
    """The axes assumed for an array of this shape (table in the module docstring)."""
    ndim = len(shape)
    trailing_rgb = ndim >= 3 and shape[-1] in (3, 4)
    if ndim == 2:
        return "YX"
    if ndim == 3:
        return "YXC" if trailing_rgb else "ZYX"
    if ndim == 4:
        return "ZYXC" if trailing_rgb else "TZYX"
    if ndim == 5:
        return "TZYXC" if trailing_rgb else "TZCYX"
    raise ValueError(f"images must have 2 to {MAX_DIMS} dimensions, got {ndim} (shape {tuple(shape)})")


def parse_axes(axes: str | None, shape: tuple[int, ...]) -> Layout:
    """Check ``axes`` against ``shape`` (or pick the default) and return a ``Layout``."""
    shape = tuple(int(s) for s in shape)
    if not 2 <= len(shape) <= MAX_DIMS:
        raise ValueError(f"images must have 2 to {MAX_DIMS} dimensions, got {len(shape)} (shape {shape})")
    if axes is None:
        return Layout(default_axes(shape), shape)
    if not isinstance(axes, str):
        raise ValueError(f"axes must be a string such as 'YX', 'ZYX' or 'YXC', got {axes!r}")
    letters = axes.strip().upper()
    if not letters.isalpha() or not letters.isascii():
        raise ValueError(f"axes {axes!r} must be letters only, e.g. 'TZYX' or 'YXC'")
    if len(letters) != len(shape):
        raise ValueError(f"axes {axes!r} name {len(letters)} axes but the image has {len(shape)} (shape {shape})")
    if len(set(letters)) != len(letters):
        raise ValueError(f"axes {axes!r} repeat a letter; each axis needs its own letter")
    if "Y" not in letters or "X" not in letters:
        raise ValueError(f"axes {axes!r} must contain both 'Y' and 'X' (the image plane)")
    if sum(letter in letters for letter in CHANNEL_LETTERS) > 1:
        raise ValueError(f"axes {axes!r} have more than one channel axis ('C' and 'S')")
    return Layout(letters, shape)
