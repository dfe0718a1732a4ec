"""Importing the scripts of benchmarks/ in tests, and forgetting them afterwards."""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@contextlib.contextmanager
def benchmark_modules(*names: str):
    """``{name: module}`` of benchmarks/NAME.py; benchmarks/ leaves sys.path and its modules leave
    sys.modules when the block ends."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCH))
        before = set(sys.modules)
        yield {name: importlib.import_module(name) for name in names}
        for name in set(sys.modules) - before:
            if str(BENCH) in (getattr(sys.modules[name], "__file__", "") or ""):
                del sys.modules[name]
