"""``core.machine``: the CPU description and matrix-product rate that benchmark results carry."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from napari_memnet.core.devices import resolve_precision
from napari_memnet.core.machine import VECTOR_FLAGS, describe_cpu, matmul_gflops, native_bf16

# the two processors of /proc/cpuinfo on the 2-core AMD EPYC of 2026-12-04 (shortened flags); the second's
# clock changed, so that reading it instead of the first shows
_PROCESSOR = """processor\t: {}
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
cpu MHz\t\t: {}
flags\t\t: fpu vme sse sse2 ssse3 fma avx avx2 bmi2
"""
ZEN1 = _PROCESSOR.format(0, "1996.248") + "\n" + _PROCESSOR.format(1, "2994.000")


def test_describe_cpu_reads_the_first_processor():
    cpu = describe_cpu(ZEN1)
    assert cpu == {"name": "AMD EPYC", "vector_flags": ["avx2", "fma"], "family_model": "23/1", "mhz": 1996}


def test_describe_cpu_names_native_bf16():
    text = ZEN1.replace("bmi2", "bmi2 avx512f avx512_bf16 amx_bf16 amx_tile").replace("AMD EPYC", "Intel Xeon")
    cpu = describe_cpu(text)
    assert cpu["name"] == "Intel Xeon" and cpu["vector_flags"] == list(VECTOR_FLAGS)


def test_describe_cpu_without_cpuinfo():
    assert describe_cpu("") == {"name": platform.processor() or "unknown"}


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="no /proc/cpuinfo on this system")
def test_describe_cpu_of_this_machine():
    cpu = describe_cpu()
    assert cpu["name"] and isinstance(cpu["vector_flags"], list)


def test_matmul_gflops_is_a_rate():
    assert 0.1 < matmul_gflops(side=128, seconds=0.05, warmup=0.01) < 1e5


def test_native_bf16_from_the_flags():
    assert not native_bf16(ZEN1) and not native_bf16("")
    assert native_bf16(ZEN1.replace("bmi2", "bmi2 avx512f avx512_bf16"))
    assert native_bf16(ZEN1.replace("bmi2", "bmi2 amx_bf16 amx_tile"))
    assert not native_bf16(ZEN1.replace("bmi2", "bmi2 avx512f"))  # AVX-512 alone emulates bf16


def test_auto_precision_on_the_cpu_follows_native_bf16_for_training_from_a_model_only():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu", training=True) == "fp32"  # from scratch: bf16 unmeasured
    assert resolve_precision("auto", "cpu", training=True, from_model=True) == ("bf16" if native_bf16() else "fp32")
    assert resolve_precision("fp32", "cpu", training=True, from_model=True) == "fp32"  # an explicit choice stands
