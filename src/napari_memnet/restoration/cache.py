"""The process's caches, and its only module-level mutable state.

* ``ENGINES``: an ``EngineCache`` of loaded models (by weights key and
  device) and prepared engines (by weights key and ``EngineSettings``).
  Lazy blocks and dask workers get their engine here, so a model is loaded,
  folded and moved at most once per process. A cached ``Engine`` never
  changes: an out-of-memory retry works on the caller's own ``PlaneRunner``.
* ``BLOCKS``: a ``BlockCache``, an LRU of restored lazy blocks bounded in
  bytes (512 MiB), so revisiting a plane in napari costs nothing.

``ENGINES.info()`` reports what a process has loaded (call it on dask workers
with ``client.run(napari_memnet.restoration.cache.cache_info)``); ``clear()``
empties both caches.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from .engine import Engine, EngineSettings


class EngineCache:
    """Models and engines of this process, each built at most once (thread-safe)."""

    def __init__(self):
        self._models: dict[tuple[str, str], Any] = {}
        self._loads: dict[tuple[str, str], int] = {}
        self._engines: dict[tuple, Engine] = {}
        self._lock = threading.Lock()

    def model(self, spec, device: str = "auto"):
        """The ``RestorationModel`` of a ``models.spec.ModelSpec`` on ``device``."""
        key = (spec.key, str(device))
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = spec.load()
                self._models[key] = model
                self._loads[key] = self._loads.get(key, 0) + 1
        return model

    def engine(self, spec, settings: EngineSettings | None = None) -> Engine:
        """The prepared ``Engine`` for ``spec``, built at most once per (weights key, settings);
        ``settings`` None: the defaults."""
        settings = EngineSettings() if settings is None else settings
        key = (spec.key, settings)
        engine = self._engines.get(key)
        if engine is not None:
            return engine
        model = self.model(spec, settings.device)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = Engine.build(model, settings)
                self._engines[key] = engine
        return engine

    def find(self, key: str, settings: EngineSettings) -> Engine | None:
        """The engine built for ``key`` and ``settings``, or None (nothing is built)."""
        return self._engines.get((key, settings))

    def info(self) -> dict:
        """``{"pid": ..., "loads": {"<key>|<device>": n_loads}, "engines": n}``."""
        with self._lock:
            loads = {f"{k}|{d}": n for (k, d), n in self._loads.items()}
            return {"pid": os.getpid(), "loads": loads, "engines": len(self._engines)}

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._loads.clear()
            self._engines.clear()


class BlockCache:
    """A thread-safe LRU of computed output blocks, bounded in bytes."""

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._data[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and self._data:
                _, dropped = self._data.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)


ENGINES = EngineCache()
BLOCKS = BlockCache()


def cache_info() -> dict:
    """What this process has cached (for ``Client.run`` on dask workers)."""
    return {**ENGINES.info(), "blocks": len(BLOCKS)}


def clear() -> None:
    """Empty the engine and block caches of this process."""
    ENGINES.clear()
    BLOCKS.clear()
