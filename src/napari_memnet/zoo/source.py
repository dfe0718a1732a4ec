"""The architecture source of an exported package: one self-contained Python
file (bioimage.io imports it on its own), with the callable and its keyword
arguments.

* denoising and JPEG deblocking: the network's own module (``models/memnet.py``,
  ``models/rednet.py``, ...: they import only torch), callable = its class,
  kwargs = the card's config;
* super-resolution: our SR networks take the MATLAB-bicubic-upsampled image
  (the paper's convention), so the package's network is ``<Class>OnBicubicInput``:
  the same class with a ``BicubicUpsample`` (``zoo/upsample.py``) in front. Its
  state dict is the network's, so the ``pytorch_state_dict`` weights are the
  model file's tensors unchanged. The taps come from ``core.imresize``, the one
  home of MATLAB's bicubic rule.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np

from ..core.imresize import resize_weights

_PACKAGE_IMPORT = re.compile(r"^\s*(from\s+\.|import\s+napari_memnet|from\s+napari_memnet)", re.M)
_FUTURE = "from __future__ import annotations\n"

_SR_WRAPPER = '''

class {cls}OnBicubicInput({cls}):
    """{cls} on the MATLAB-bicubic-upsampled input: (N, C, H, W) -> (N, C, scale*H, scale*W).

    napari-memnet's super-resolution networks are trained on the bicubic-upsampled
    low-resolution image (as in the MemNet paper); this wrapper does that upsampling
    first. The state dict is {cls}'s."""

    def __init__(self, scale, upsample_taps, first_tap, **config):
        super().__init__(**config)
        self.upsample = BicubicUpsample(scale, upsample_taps, first_tap)

    def forward(self, x):
        return super().forward(self.upsample(x))
'''


class SourceError(ValueError):
    """The network's module cannot be shipped as a single file."""


def upsample_taps(scale: int) -> tuple[int, list[list[float]]]:
    """``(first_tap, taps)`` of MATLAB bicubic upsampling by ``scale``, read off
    ``core.imresize``'s weight matrix away from the borders (see ``zoo/upsample.py``)."""
    s = int(scale)
    n, k = 16, 8  # an interior input pixel of a 16-pixel line
    matrix = resize_weights(n, n * s, float(s))
    rows = matrix[k * s:(k + 1) * s]
    used = np.nonzero(np.any(rows != 0, axis=0))[0]
    first, last = int(used[0]), int(used[-1])
    taps = [[float(w) for w in row[first:last + 1]] for row in rows]
    return first - k, taps


def module_source(network) -> str:
    """The text of the module that defines ``network``'s class; it must import
    nothing of napari_memnet, or the package could not load it on its own."""
    path = Path(inspect.getsourcefile(type(network)))
    text = path.read_text("utf-8")
    if _PACKAGE_IMPORT.search(text):
        raise SourceError(f"{path.name} imports napari_memnet modules, so it cannot be a package's single "
                          "architecture file")
    return text


def _without_future(text: str) -> str:
    return text.replace(_FUTURE, "", 1)


def architecture_source(network, scale: int = 1) -> tuple[str, str, dict]:
    """``(source text, callable name, kwargs)`` for ``network`` (a scale > 1: the SR wrapper)."""
    cls = type(network).__name__
    kwargs = network.config.to_dict()
    text = module_source(network)
    if scale == 1:
        return text, cls, kwargs
    first, taps = upsample_taps(scale)
    upsample_text = (Path(__file__).parent / "upsample.py").read_text("utf-8")
    header = (f'"""{cls} for super-resolution by {scale}, as napari-memnet exports it: the network module, '
              'then MATLAB-bicubic upsampling, then the wrapper."""\n\n' + _FUTURE)
    body = (_without_future(text) + "\n\n# ---- napari_memnet/zoo/upsample.py\n" + _without_future(upsample_text)
            + _SR_WRAPPER.format(cls=cls))
    kwargs = {"scale": int(scale), "upsample_taps": taps, "first_tap": first, **kwargs}
    return header + body, f"{cls}OnBicubicInput", kwargs
