"""How training images and arrays are put on the engine's 0..1 scale.

The rule is ``restore``'s (``napari_memnet.core.intensity.choose_intensity``: 8-bit
data / 255, 0..1 floats as they are, anything else, e.g. uint16, by its
0.1/99.9th percentiles), so a model meets at restore time the intensities it
trained on: ``image_intensity`` for one image, ``pair_intensity`` for a
(degraded, clean) pair (the map chosen from the degraded image, applied to
both), ``apply_intensity`` to use a map.

Image files always follow that rule. Arrays follow it too unless the caller
says they are already on the engine's scale (``intensity="as-is"``, e.g. the
napari Train widget, which maps each layer before it splits off a held-out
region so both parts share one map): then floats are taken as they are, uint8
as ``x / 255`` and booleans as 0/1 (``engine_map``).
"""

from __future__ import annotations

import numpy as np

from ..core.intensity import Intensity, choose_intensity, percentile_range

RESTORE = "restore"  # arrays are mapped as restore maps them (the default)
AS_IS = "as-is"  # arrays are already on the engine's 0..1 scale
INTENSITY_RULES = (RESTORE, AS_IS)

_UNIT = Intensity("unit", 0.0, 1.0)
_8BIT = Intensity("8bit", 0.0, 255.0)


def check_rule(intensity: str) -> str:
    """``intensity`` if it is one of ``INTENSITY_RULES``, else ValueError."""
    if intensity not in INTENSITY_RULES:
        raise ValueError(f"intensity must be {RESTORE!r} (map arrays to 0..1 as restore maps its input) or "
                         f"{AS_IS!r} (arrays already on the engine's 0..1 scale), got {intensity!r}")
    return intensity


def _check_pixel_type(img: np.ndarray) -> None:
    if img.dtype != bool and img.dtype.kind not in "iuf":
        raise ValueError(f"unsupported pixel type {img.dtype} (expected integer or float pixels)")


def _mapped_channels(img: np.ndarray) -> np.ndarray:
    """What restore maps: all of a gray image, the R, G, B channels of a colour one."""
    return img[..., :3] if img.ndim == 3 and img.shape[-1] in (3, 4) else img


def engine_map(img: np.ndarray) -> Intensity:
    """The map of an array already on the engine's scale (``intensity="as-is"``):
    floats as they are (values a little outside 0..1 included), uint8 ``x / 255``,
    booleans 0/1. Other integer types have no 0..1 scale of their own: ValueError."""
    img = np.asarray(img)
    _check_pixel_type(img)
    if img.dtype == np.uint8:
        return _8BIT
    if img.dtype == bool or img.dtype.kind == "f":
        return _UNIT
    raise ValueError(f"intensity={AS_IS!r} takes float arrays on 0..1 (or uint8), got {img.dtype}: "
                     f"map it first, or pass intensity={RESTORE!r} to map it as restore does")


def _restore_map(img: np.ndarray) -> Intensity:
    """``choose_intensity`` of ``img`` as restore chooses it. Booleans and images
    with NaN/inf are taken as they are (the data checks then report the NaN/inf)."""
    _check_pixel_type(img)
    if img.dtype == bool or (img.dtype.kind == "f" and not np.isfinite(img).all()):
        return _UNIT
    return choose_intensity(_mapped_channels(img))


def image_intensity(img: np.ndarray) -> Intensity:
    """The map ``restore`` would apply to ``img``; ValueError where its percentiles
    collapse (a (nearly) constant image that is neither 8-bit nor 0..1: restore
    would only shift it, so it cannot be put on 0..1 for training)."""
    img = np.asarray(img)
    imap = _restore_map(img)
    if imap.mode == "percentile" and imap.span == 1.0:
        p_lo, p_hi = percentile_range(_mapped_channels(img))
        if not p_hi > p_lo:
            raise ValueError(f"its 0.1st and 99.9th percentiles are both {p_lo:g} (a (nearly) constant image): "
                             "an image that is neither 8-bit nor 0..1 is mapped to 0..1 by those percentiles, "
                             "as restore does, so it needs a range of intensities")
    return imap


def pair_intensity(degraded: np.ndarray, clean: np.ndarray) -> tuple[Intensity, Intensity]:
    """(map of the degraded image, map of the clean image) of one pair.

    The degraded image's map is the one restore will apply (``image_intensity``).

    * A percentile map is in the degraded image's own units and the clean image
      gets the same map, so the target keeps its relation to the input. A clean
      image of the same pixel type (or with no fixed scale of its own) is taken to
      be in those units. One of another type with a fixed scale (a uint8 PNG beside
      a float TIFF) is read on the scale whose mean is nearest the degraded
      image's: as it is, on 0..1 or on 0..255 (``_in_units_of``).
    * An 8-bit or 0..1 map is a fixed scale: the clean image maps by its own fixed
      scale (a 0..1 float clean TIFF beside an 8-bit PNG), or, with none (values a
      little over 255 or 1), by the degraded image's map if both have the same pixel
      type; a clean image of another type and range is refused."""
    degraded, clean = np.asarray(degraded), np.asarray(clean)
    try:
        dmap = image_intensity(degraded)
    except ValueError as exc:
        raise ValueError(f"degraded image: {exc}") from None
    own = _restore_map(clean)
    if dmap.mode == "percentile":
        if clean.dtype == degraded.dtype or own.mode == "percentile":
            return dmap, dmap
        return dmap, _in_units_of(degraded, clean, own, dmap)
    if own.mode != "percentile":
        return dmap, own
    if clean.dtype == degraded.dtype:
        return dmap, dmap
    scale = "8-bit (0..255)" if dmap.mode == "8bit" else "0..1"
    raise ValueError(f"the degraded image is {degraded.dtype} on the {scale} scale but the clean one is "
                     f"{clean.dtype} with values {clean.min():g}..{clean.max():g}: save both on one scale "
                     "(restore maps the degraded image by its scale, the clean one must match it)")


def _in_units_of(degraded: np.ndarray, clean: np.ndarray, own: Intensity, dmap: Intensity) -> Intensity:
    """The percentile map ``dmap`` for a ``clean`` image of another pixel type with a
    fixed scale ``own`` (8-bit or 0..1): the clean image is read as it is, on 0..1
    or on 0..255, whichever gives the mean nearest the degraded image's mean (a
    registered pair has about the same mean: noise, bicubic blur and JPEG keep it),
    then mapped by ``dmap``. Returned as ONE affine map of the clean pixels."""
    target = float(np.mean(_mapped_channels(degraded), dtype=np.float64))
    mean = float(np.mean(_mapped_channels(clean), dtype=np.float64))
    if not (np.isfinite(target) and np.isfinite(mean)):
        return dmap
    # (a, s): clean pixel x -> (x - a) / s in the degraded image's units
    candidates = [(0.0, 1.0), (own.low, own.span), (own.low, own.span / 255.0)]
    a, s = min(candidates, key=lambda c: abs((mean - c[0]) / c[1] - target))
    low = a + s * dmap.low
    return Intensity("percentile", low, low + s * dmap.span)


def array_intensity(img: np.ndarray, intensity: str) -> Intensity:
    """The map of one training array under rule ``intensity``: restore's
    (``image_intensity``) or the engine's scale as is (``engine_map``)."""
    return engine_map(img) if check_rule(intensity) == AS_IS else image_intensity(img)


def array_pair_intensity(degraded: np.ndarray, clean: np.ndarray, intensity: str) -> tuple[Intensity, Intensity]:
    """The maps of a (degraded, clean) array pair under rule ``intensity``: restore's
    (``pair_intensity``) or each array on the engine's scale as is (``engine_map``)."""
    if check_rule(intensity) == AS_IS:
        return engine_map(degraded), engine_map(clean)
    return pair_intensity(degraded, clean)


def apply_intensity(img: np.ndarray, imap: Intensity) -> np.ndarray:
    """``img`` on 0..1 by ``imap``, a new float32 array (8-bit: exactly ``x / 255``
    in float32, as the loader has always given for uint8)."""
    img = np.asarray(img)
    if imap.mode == "8bit":
        return img.astype(np.float32) / np.float32(255)
    return imap.forward(img)
