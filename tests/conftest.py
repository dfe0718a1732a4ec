"""Shared fixtures. The real data sets live outside the project, in
``../shared/data`` beside the checkout; ``NAPARI_MEMNET_DATA`` points elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _data_root() -> Path | None:
    env = os.environ.get("NAPARI_MEMNET_DATA")
    root = Path(env) if env else _DEFAULT_DATA
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the public benchmark/training images (``test/``, ``train/``)."""
    root = _data_root()
    if root is None:
        pytest.skip(
            f"real image data not found: set NAPARI_MEMNET_DATA or place it at {_DEFAULT_DATA}"
        )
    return root


@pytest.fixture(autouse=True)
def _isolated_user_models(tmp_path_factory, monkeypatch):
    """Every test gets its own user-model folder so nothing leaks into ~/.local."""
    monkeypatch.setenv("NAPARI_MEMNET_MODELS_DIR", str(tmp_path_factory.mktemp("user_models")))


@pytest.fixture
def thread_spy(monkeypatch):
    """``spy(owner, name)`` wraps ``owner.name`` to record the threads that call it in ``spy.threads``
    (name -> set of threads): for checking that work runs in a worker, not on the main thread."""
    import threading

    threads: dict = {}

    def spy(owner, name):
        original = getattr(owner, name)

        def recorded(*args, **kwargs):
            threads.setdefault(name, set()).add(threading.current_thread())
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, recorded)

    spy.threads = threads
    return spy
