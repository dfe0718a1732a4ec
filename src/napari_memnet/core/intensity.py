"""Intensity normalisation to the engine's 0..1 scale and back.

The networks see float32 intensities on 0..1 (an 8-bit value / 255). How an
input is mapped there (``choose_intensity``), in this order:

1. ``uint8``, and any integer data whose values all lie in 0..255: ``x / 255``
   ("8bit").
2. Floating-point data whose values all lie in 0..1: used as is ("unit").
3. Floating-point data whose values are all whole numbers in 0..255: ``x / 255``
   ("8bit", e.g. an 8-bit image converted to float).
4. Anything else (uint16, other integer or float ranges): the CSBDeep-style
   percentile normalisation ``(x - p_low) / (p_high - p_low)`` with
   p_low/p_high the 0.1st/99.9th percentiles of the whole image or stack
   ("percentile"). Values outside the percentiles are not clipped.

The result is mapped back with the inverse map. The output dtype follows the
input: integer inputs come back in the same dtype, rounded and clipped to its
range; floating-point inputs come back as float32 (``output_dtype``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_PERCENTILES = (0.1, 99.9)
_SAMPLE_LIMIT = 1 << 24  # percentiles of bigger arrays use an evenly strided sample


@dataclass(frozen=True)
class Intensity:
    """The affine map ``x -> (x - low) / (high - low)`` and its inverse."""

    mode: str  # "8bit", "unit" or "percentile"
    low: float
    high: float

    @property
    def span(self) -> float:
        return self.high - self.low

    def forward(self, data) -> np.ndarray:
        """``data`` on the 0..1 scale, as a new float32 array."""
        out = np.array(data, dtype=np.float32, copy=True)
        if self.low:
            out -= np.float32(self.low)
        if self.span != 1.0:
            out *= np.float32(1.0 / self.span)
        return out

    def inverse(self, values: np.ndarray, dtype) -> np.ndarray:
        """Map 0..1 ``values`` back to the input's scale, cast to ``output_dtype(dtype)``."""
        out = np.asarray(values, dtype=np.float32)
        if self.span != 1.0 or self.low:
            out = out * np.float32(self.span) + np.float32(self.low)
        return cast_output(out, dtype)


    def inverse_into(self, values: np.ndarray, target: np.ndarray) -> None:
        """Like ``inverse`` but in place: scales, rounds and clips the float32
        ``values`` themselves, then writes them into ``target`` (same shape, the
        output dtype), so no full-size temporary is made."""
        if self.span != 1.0:
            values *= np.float32(self.span)
        if self.low:
            values += np.float32(self.low)
        if target.dtype.kind in "iu":
            info = np.iinfo(target.dtype)
            np.rint(values, out=values)
            np.clip(values, info.min, info.max, out=values)
        target[...] = values


def output_dtype(dtype) -> np.dtype:
    """Integer dtypes are kept; everything floating comes back as float32."""
    dtype = np.dtype(dtype)
    return dtype if dtype.kind in "iu" else np.dtype(np.float32)


def cast_output(values: np.ndarray, dtype) -> np.ndarray:
    """Round and clip to an integer ``dtype``'s range, or return float32."""
    target = output_dtype(dtype)
    if target.kind in "iu":
        info = np.iinfo(target)
        rounded = np.rint(values)
        np.clip(rounded, info.min, info.max, out=rounded)
        return rounded.astype(target)
    return np.asarray(values, dtype=np.float32)


def _sample(data: np.ndarray) -> np.ndarray:
    if data.size <= _SAMPLE_LIMIT:
        return data
    step = int(np.ceil((data.size / _SAMPLE_LIMIT) ** (1.0 / data.ndim)))
    return data[tuple(slice(None, None, step) for _ in range(data.ndim))]


def choose_intensity(data, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> Intensity:
    """The ``Intensity`` map for ``data`` (rules in the module docstring).

    ``data`` must be finite and real; for percentiles of more than 16 M
    values an evenly strided sample of about 16 M values is used."""
    data = np.asarray(data)
    low_p, high_p = percentiles
    if not 0.0 <= low_p < high_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
    if data.dtype == np.uint8:
        return Intensity("8bit", 0.0, 255.0)
    lo, hi = float(data.min()), float(data.max())
    if data.dtype.kind in "iu" and lo >= 0 and hi <= 255:
        return Intensity("8bit", 0.0, 255.0)
    if data.dtype.kind == "f":
        if lo >= 0.0 and hi <= 1.0:
            return Intensity("unit", 0.0, 1.0)
        if lo >= 0.0 and hi <= 255.0 and bool(np.all(np.mod(_sample(data), 1.0) == 0)):
            return Intensity("8bit", 0.0, 255.0)
    p_lo, p_hi = percentile_range(data, percentiles)
    if not p_hi > p_lo:  # (nearly) constant data: shift only
        p_hi = p_lo + 1.0
    return Intensity("percentile", p_lo, p_hi)


def percentile_range(data, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> tuple[float, float]:
    """The raw ``(p_low, p_high)`` percentiles ``choose_intensity`` uses (equal for
    (nearly) constant data, where it then only shifts); same sampling of big arrays."""
    p_lo, p_hi = (float(v) for v in np.percentile(_sample(np.asarray(data)), list(percentiles)))
    return p_lo, p_hi
