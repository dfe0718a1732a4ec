"""``conv_add_(acc, x, w, b)``: ``acc += conv2d(x, w, b)`` written straight into
``acc``, and the per-forward ``Workspace`` of reusable buffers that the CPU
inference form of MemNet keeps its feature maps in.

Why: a plain PyTorch forward allocates a fresh output tensor for every conv,
every activation and every sum, about 400 tensors of ``C x H x W`` floats for
one M6R6 tile. On the CPU, tensors over 32 MiB (64 channels of a 512x512 tile
are 64 MiB) come straight from ``mmap`` and go back on ``free``, so every
one of them is page-faulted in and zero-filled by the kernel again; on the
2-core VM of docs/performance.md that was ~45 % of the wall time (6.5 million
minor faults for one 512x512 tile). Writing into a handful of buffers that
live for the whole forward removes that cost.

On CPUs PyTorch ships oneDNN's fused convolution with an in-place "add"
post-op (``torch.ops.mkldnn._convolution_pointwise_.binary``, the kernel
``torch.compile`` uses for conv + residual). It is a private op, so it is
used only after ``inplace_conv_available()`` has run it once on a small
problem and compared it with ``F.conv2d``; otherwise (or on other devices)
``conv_add_`` falls back to ``acc.add_(F.conv2d(...))``, the same result with
one temporary.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=None)
def inplace_conv_available() -> bool:
    """Whether the oneDNN in-place conv + add (+ ReLU) kernel exists here and
    agrees with ``F.conv2d`` (checked once per process, on a small problem)."""
    try:
        op = torch.ops.mkldnn._convolution_pointwise_.binary
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 9, 7, generator=gen).contiguous(memory_format=torch.channels_last)
        w = torch.randn(5, 4, 3, 3, generator=gen)
        b = torch.randn(5, generator=gen)
        acc = torch.randn(1, 5, 9, 7, generator=gen).contiguous(memory_format=torch.channels_last)
        want = (acc + F.conv2d(x, w, b, padding=1)).relu()
        with torch.inference_mode():
            op(acc, x, w, b, [1, 1], [1, 1], [1, 1], 1, "add", 1.0, "relu", [], None)
        return bool(torch.allclose(acc, want, rtol=1e-4, atol=1e-4))
    except Exception:  # missing op, an oneDNN build without it, a changed schema
        return False


def conv_add_(acc: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
              padding: int, *, relu: bool = False) -> torch.Tensor:
    """``acc = acc + conv2d(x, weight, bias, padding)`` (then ReLU if ``relu``),
    in place; returns ``acc``. Stride 1, no dilation, one group."""
    fused = (acc.device.type == "cpu" and acc.dtype == torch.float32 and x.dtype == torch.float32
             and acc.is_contiguous(memory_format=torch.channels_last) and inplace_conv_available())
    if fused:
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            acc, x, weight, bias, [padding, padding], [1, 1], [1, 1], 1,
            "add", 1.0, "relu" if relu else None, [], None)
    acc.add_(F.conv2d(x, weight, bias, padding=padding))
    return acc.relu_() if relu else acc


class Workspace:
    """Named feature-map buffers of one forward pass, in channels_last layout.

    ``get(name, channels, like)`` returns the buffer ``name`` as an
    (N, channels, H, W) tensor shaped like ``like``, allocating it the first
    time; later calls with the same name reuse the memory. A workspace is
    local to one forward call (so threads never share one, and nothing
    outlives the call)."""

    def __init__(self):
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, channels: int, like: torch.Tensor) -> torch.Tensor:
        n, _, h, w = like.shape
        buf = self._buffers.get(name)
        if buf is None:
            buf = torch.empty((n, channels, h, w), dtype=like.dtype, device=like.device,
                              memory_format=torch.channels_last)
            self._buffers[name] = buf
        elif buf.shape != (n, channels, h, w):
            raise ValueError(f"workspace buffer {name!r} has shape {tuple(buf.shape)}, "
                             f"asked for {(n, channels, h, w)}")
        return buf

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


def affine_relu_into(out: torch.Tensor, x: torch.Tensor, scale: torch.Tensor,
                     shift: torch.Tensor) -> torch.Tensor:
    """``out = ReLU(x * scale + shift)`` per channel, written into ``out``."""
    torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1), out=out)
    return out.relu_()
