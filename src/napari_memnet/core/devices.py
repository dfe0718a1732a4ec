"""Compute devices and numeric precision for inference.

``device="auto"`` picks CUDA, then Apple MPS, then the CPU. ``precision="auto"``
is bf16 autocast on CUDA (fp16 where the GPU lacks bf16), fp16 autocast on MPS
and fp32 on the CPU (measured: bf16 on a CPU without native bf16 units is
slower than fp32, see docs/performance.md). torch is imported lazily.
"""

from __future__ import annotations

import contextlib

CPU_TILE = 512
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


def available_devices() -> list[str]:
    """The device kinds present here, in preference order, e.g. ``["cuda", "cpu"]``.

    The CPU is always present and listed last."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def device_request(device) -> str:
    """A device request as given, as a string: a ``torch.device`` becomes its name
    (torch is imported only then); ValueError for anything that is neither."""
    if isinstance(device, str):
        return device
    import torch

    if isinstance(device, torch.device):
        return str(device)
    raise ValueError(f"device must be a string like 'auto', 'cpu', 'cuda', 'cuda:0' or 'mps', got {device!r}")


def check_precision(precision) -> str:
    """The canonical name of a precision request (``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``;
    ``"float32"``, ``"bfloat16"``, ``"float16"``... are aliases); ValueError otherwise."""
    name = PRECISION_ALIASES.get(precision, precision) if isinstance(precision, str) else precision
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return name


def resolve_device(device="auto"):
    """A ``torch.device`` for ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``
    or a ``torch.device``; ValueError if that device is not available here."""
    import torch

    name = device_request(device).strip().lower()
    present = available_devices()
    if name == "auto":
        return torch.device(present[0])
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if kind not in present:
        raise ValueError(f"device {device!r} is not available here (available: {', '.join(present)})")
    if index:
        if kind != "cuda" or not index.isdigit():
            raise ValueError(f"bad device index in {device!r}; expected e.g. 'cuda:0'")
        if int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    return torch.device(name)


def resolve_precision(precision: str, device, training: bool = False, from_model: bool = False) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for the requested precision on ``device``
    (``"float32"``, ``"bfloat16"``, ``"float16"`` are accepted as aliases).

    ``"auto"``: bf16 on CUDA; on the CPU fp32, except bf16 for ``training`` ``from_model`` (a run that
    starts from trained weights: fine-tuning, ``init``) on a CPU with native bf16
    (``core.machine.native_bf16``: 1.76-2.06x the fp32 steps, and the same validation curve as fp32
    when measured from trained weights; from scratch it is unmeasured, so fp32; emulated bf16 is
    7.5-8.6x slower; restoring in bf16 was slower and missed the 0.01 dB rule, so restoring stays
    fp32: docs/training.md, docs/performance.md); where fp16 is the only half precision (MPS, a
    CUDA GPU without bf16) fp16 for restoring and fp32 for ``training`` (the trainer has no loss scaling)."""
    import torch

    precision = check_precision(precision)
    kind = torch.device(device).type
    if precision == "auto":
        if kind == "cuda":
            if torch.cuda.is_bf16_supported():
                return "bf16"
            return "fp32" if training else "fp16"
        if kind == "mps":
            return "fp32" if training else "fp16"
        if training and from_model:
            from .machine import native_bf16

            return "bf16" if native_bf16() else "fp32"
        return "fp32"
    if kind == "cpu" and precision == "fp16":
        raise ValueError("fp16 is not supported on the CPU; use 'fp32' or 'bf16'")
    return precision


def use_channels_last(device, requested: bool | None = None) -> bool:
    """channels_last memory format: ``requested``, else on for CUDA and the CPU (measured faster
    on both, docs/performance.md and docs/training.md) and off for MPS."""
    import torch

    return bool(requested) if requested is not None else torch.device(device).type in ("cuda", "cpu")


def autocast(device, precision: str):
    """A context manager running convolutions in ``precision`` on ``device``."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def bytes_per_pixel(network, precision: str) -> int:
    """Rough peak activation bytes per input pixel of one forward pass.

    MemNet keeps the M+1 long-term memories plus about four working tensors
    of C channels alive; other networks are charged like a 12-tensor net."""
    config = getattr(network, "config", None)
    channels = int(getattr(config, "channels", 64))
    blocks = int(getattr(config, "blocks", 8))
    live = blocks + 1 + 4
    unshuffle = int(getattr(config, "unshuffle", 1))  # the fast MemNet's maps are 1/s^2 of the image
    element = 4 if precision == "fp32" else 2
    # autocast keeps fp32 copies of some inputs: charge fp32 for the working set
    return max(1, channels * (live * element + 4 * 4) // unshuffle**2)


def default_tile_size(device, network, precision: str) -> int:
    """The tile core side used when ``tile_size=None``.

    CPU: 512 px (about 1.3 GiB of activations for M6R6 C64 with its 74 px
    halo, keeping peak RSS under 4 GiB), 512 * s for a space-to-depth network
    of factor s (the same memory), smaller only when half the available RAM
    cannot hold such a tile. GPU: the largest multiple of 64 whose tile
    (core + halo) needs at most half the free device memory, between 256 and
    4096. MPS: 1024."""
    import torch

    kind = torch.device(device).type
    radius = int(getattr(network, "receptive_radius", 0))
    per_px = bytes_per_pixel(network, precision)
    if kind == "mps":
        return 1024
    if kind == "cpu":
        side = int((0.5 * available_ram() / per_px) ** 0.5) - 2 * radius
        # a space-to-depth network's maps are 1/s^2 of the tile: its tiles may be s times larger (fewer halos)
        unshuffle = int(getattr(getattr(network, "config", None), "unshuffle", 1))
        return max(64, min(CPU_TILE * unshuffle, side // 32 * 32))
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    side = int((0.5 * free / per_px) ** 0.5) - 2 * radius
    return max(256, min(4096, side // 64 * 64))


def available_ram() -> int:
    """Bytes of RAM available to new allocations (``MemAvailable``; 8 GiB if unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3
