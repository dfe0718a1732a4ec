"""Seeded randomness that stays inside a block: the caller's random sequences are left alone."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def seeded_torch(seed: int):
    """torch's CPU generator seeded with ``seed`` inside the block and put back as it was after it.

    What the block draws from it (a network's initial weights: networks are built on the CPU) is
    fixed by ``seed``, and the process's own random sequence (a user's, in the napari console or a
    script) goes on as if the block had not run. CUDA's generators are not touched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        yield
