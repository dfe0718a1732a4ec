"""What the machine a benchmark ran on is, and how fast its CPU multiplies.

The CPUs these benchmarks run on differ by up to 7x for the same network (an
AMD EPYC of the first generation at 2.0 GHz with AVX2 against one with AVX-512
BF16), so a speed is only meaningful with the CPU beside it. ``describe_cpu``
reads what ``/proc/cpuinfo`` says (name, family/model, clock, the vector
extensions that decide the speed of convolutions and of bf16); ``matmul_gflops``
measures the fp32 matrix-multiply rate of this process's threads, the ceiling
that a convolution-bound network approaches (docs/performance.md).
"""

from __future__ import annotations

import platform
import time

# the flags that decide convolution speed (vector width) and whether bf16 is native
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """The ``key: value`` lines of the first processor in ``/proc/cpuinfo`` text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def describe_cpu(cpuinfo: str | None = None) -> dict:
    """Name, vendor family/model, clock (MHz) and vector extensions of this CPU, from
    ``/proc/cpuinfo`` (or the given text); ``{"name": platform.processor()}`` where it cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as fh:
                cpuinfo = fh.read()
        except OSError:
            cpuinfo = ""
    fields = _cpuinfo_fields(cpuinfo)
    if "model name" not in fields:
        return {"name": platform.processor() or "unknown"}
    flags = set(fields.get("flags", "").split())
    out = {"name": fields["model name"], "vector_flags": [f for f in VECTOR_FLAGS if f in flags]}
    if "cpu family" in fields and "model" in fields:
        out["family_model"] = f"{fields['cpu family']}/{fields['model']}"
    try:
        out["mhz"] = round(float(fields["cpu MHz"]))
    except (KeyError, ValueError):
        pass
    return out


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), per ``/proc/cpuinfo`` (or the
    given text): there bf16 autocast trains about twice as fast as fp32 with the same curve; without
    it, emulated, 7.5-8.6x slower (docs/training.md)."""
    flags = describe_cpu(cpuinfo).get("vector_flags", [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_gflops(side: int = 2048, seconds: float = 1.0, warmup: float = 0.3) -> float:
    """fp32 GFLOP/s of ``side`` x ``side`` matrix products on the CPU with torch's current threads:
    products for about ``warmup`` seconds first (the first ones run up to a third slower: thread pool,
    first touch of the memory), then the rate over about ``seconds``; 2 * side**3 FLOP each."""
    import torch

    gen = torch.Generator().manual_seed(0)  # its own: the process's random sequence is not advanced
    a = torch.randn(side, side, generator=gen)
    b = torch.randn(side, side, generator=gen)
    out = torch.empty(side, side)
    rate = 0.0
    for budget in (warmup, seconds):
        count, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=out)
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= budget:
                rate = 2 * side ** 3 * count / elapsed / 1e9
                break
    return rate
