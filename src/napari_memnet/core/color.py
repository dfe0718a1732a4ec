"""Colour conversions with MATLAB semantics (channels on the last axis).

``rgb_to_ycbcr`` / ``ycbcr_to_rgb`` follow MATLAB ``rgb2ycbcr`` / ``ycbcr2rgb``
(ITU-R BT.601, studio range: Y in 16..235, Cb/Cr in 16..240 on the 8-bit scale):

    Y  = 16  + ( 65.481 R + 128.553 G +  24.966 B)
    Cb = 128 + (-37.797 R -  74.203 G + 112.000 B)
    Cr = 128 + (112.000 R -  93.786 G -  18.214 B)      (R, G, B in [0, 1])

Float input is taken on the 0..1 scale and gives float output on the 0..1
scale (8-bit value / 255), unrounded and unclipped, like MATLAB's double path.
uint8 input gives uint8 output, rounded half away from zero and saturated,
like MATLAB's uint8 path.

``rgb_to_gray`` is MATLAB ``rgb2gray`` (the luma weights it uses after
removing the hue and saturation), used to turn colour denoising sets gray.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rgb_to_ycbcr", "ycbcr_to_rgb", "rgb_to_y", "rgb_to_gray",
           "YCBCR_MATRIX", "YCBCR_OFFSET", "GRAY_WEIGHTS"]

YCBCR_MATRIX = np.array(
    [[65.481, 128.553, 24.966],
     [-37.797, -74.203, 112.0],
     [112.0, -93.786, -18.214]],
    dtype=np.float64,
)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
# MATLAB rgb2gray: the first row of inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703])
GRAY_WEIGHTS = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103], dtype=np.float64)


def _check_channels(img: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim < 1 or img.shape[-1] != 3:
        raise ValueError(f"{what} expects an image with 3 channels on the last axis, got shape {img.shape}")
    if img.dtype != np.uint8 and not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"{what} expects uint8 (0..255) or float (0..1) input, got dtype {img.dtype}")
    return img


def _to_uint8(values_255: np.ndarray) -> np.ndarray:
    """MATLAB's conversion of a double result to uint8: round half away, saturate."""
    return np.clip(np.sign(values_255) * np.floor(np.abs(values_255) + 0.5), 0, 255).astype(np.uint8)


def to_uint8(x01: np.ndarray) -> np.ndarray:
    """A 0..1 float image as MATLAB ``im2uint8`` would store it (x*255 rounded, saturated)."""
    return _to_uint8(np.asarray(x01, dtype=np.float64) * 255.0)


def rgb_to_ycbcr(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr``: (..., 3) RGB -> (..., 3) YCbCr (see module docstring)."""
    img = _check_channels(img, "rgb_to_ycbcr")
    rgb01 = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    ycc255 = rgb01 @ YCBCR_MATRIX.T + YCBCR_OFFSET
    if img.dtype == np.uint8:
        return _to_uint8(ycc255)
    return (ycc255 / 255.0).astype(img.dtype)


def ycbcr_to_rgb(img: np.ndarray) -> np.ndarray:
    """MATLAB ``ycbcr2rgb``: (..., 3) YCbCr -> (..., 3) RGB (inverse of ``rgb_to_ycbcr``)."""
    img = _check_channels(img, "ycbcr_to_rgb")
    ycc255 = img.astype(np.float64) if img.dtype == np.uint8 else img.astype(np.float64) * 255.0
    rgb01 = (ycc255 - YCBCR_OFFSET) @ np.linalg.inv(YCBCR_MATRIX).T
    if img.dtype == np.uint8:
        return _to_uint8(rgb01 * 255.0)
    return rgb01.astype(img.dtype)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """The Y (luma) channel of MATLAB ``rgb2ycbcr``: (..., 3) -> (...)."""
    img = _check_channels(img, "rgb_to_y")
    rgb01 = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    y255 = rgb01 @ YCBCR_MATRIX[0] + YCBCR_OFFSET[0]
    if img.dtype == np.uint8:
        return _to_uint8(y255)
    return (y255 / 255.0).astype(img.dtype)


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray``: weights 0.298936021293775, 0.587043074451121,
    0.114020904255103; uint8 in -> uint8 out (rounded), float in -> float out."""
    img = _check_channels(img, "rgb_to_gray")
    gray = img.astype(np.float64) @ GRAY_WEIGHTS
    if img.dtype == np.uint8:
        return _to_uint8(gray)
    return gray.astype(img.dtype)
