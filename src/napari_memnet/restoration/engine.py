"""The engine: a prepared inference module on a device, run tile by tile on
2-D float planes.

``Engine(model, device=..., precision=..., tile_size=..., ensemble=...)`` loads the model,
folds its BatchNorm (``RestorationModel.inference_module()``), moves it to the
device (channels_last on CUDA and the CPU) and fixes the tile size (from
device memory when None). An Engine never changes after it is built, so one
engine may serve many callers and threads (``restoration.cache``).

Those four requests are one ``EngineSettings`` (checked once, hashable,
picklable): the caches, the lazy block plans and the dask workers pass that
one value, and ``Engine.build(model, settings)`` makes the engine from it.

``ensemble`` = n > 1 averages the network's outputs under n dihedral
transforms of each window (``restoration.ensemble``; n times the time).

``engine.runner()`` gives one caller its own tile size: ``PlaneRunner.run``
restores a plane tile by tile with a halo of the receptive radius (so tiled
equals untiled); a CUDA (or host) out-of-memory error halves THAT runner's
tile and restarts the plane, never the shared engine's.

A network with a global receptive field (``global_context``: MHNet) cannot be
tiled exactly; its engine ``blend``s overlapping tiles instead
(``core.tiling.blend_weights``: each window's whole output, weighted, summed
and normalised), which leaves a small measured seam error (docs/architecture.md).
A plane that fits in one tile is never split, so it is exact either way.
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from dataclasses import astuple, dataclass

import numpy as np

from ..core.tiling import align_up, blend_weights, count_tiles, tile_grid
from .ensemble import check_ensemble, ensemble_forward
from .events import check_cancel

MIN_RETRY_TILE = 32  # out-of-memory retries stop below this tile side
RETILED = object()  # yielded by PlaneRunner.run when it restarts a plane with smaller tiles


def check_tile_size(tile_size) -> int | None:
    """A positive integer tile side, or None (choose from memory); ValueError otherwise."""
    if tile_size is None:
        return None
    if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive integer (pixels) or None, got {tile_size!r}")
    return int(tile_size)


@dataclass(frozen=True)
class EngineSettings:
    """What an ``Engine`` is asked for, as given (``"auto"`` stays ``"auto"``;
    the engine's ``device``/``precision``/``tile`` are what it resolved to).

    ``device``: "auto", "cpu", "cuda", "cuda:N", "mps" (a ``torch.device`` is
    kept as its string); ``precision``: "auto", "fp32", "bf16", "fp16" (or an
    alias such as "float32"); ``tile_size``: a positive int or None (from
    memory); ``ensemble``: 1..8 dihedral transforms averaged. Checked here,
    once; ValueError names what was expected."""

    device: str = "auto"
    precision: str = "auto"
    tile_size: int | None = None
    ensemble: int = 1

    def __post_init__(self):
        from ..core.devices import check_precision, device_request

        object.__setattr__(self, "device", device_request(self.device))
        object.__setattr__(self, "precision", check_precision(self.precision))
        object.__setattr__(self, "tile_size", check_tile_size(self.tile_size))
        object.__setattr__(self, "ensemble", check_ensemble(self.ensemble))

    def is_default(self) -> bool:
        return self == EngineSettings()

    def as_tuple(self) -> tuple:
        """(device, precision, tile_size, ensemble): for cache keys and dask tokens."""
        return astuple(self)


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if isinstance(exc, (MemoryError, *oom_types)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class Engine:
    """A prepared inference module on a device (see the module docstring).

    ``channels_last``: None = ``core.devices.use_channels_last`` (on for CUDA
    and the CPU, off on MPS); True/False force it (``memnet bench --channels-last``)."""

    def __init__(self, model, *, device="auto", precision="auto", tile_size=None, task=None, channels_last=None,
                 ensemble=1):
        import torch

        from ..core.devices import default_tile_size, resolve_device, resolve_precision, use_channels_last
        from ..models.files import load_model

        self.settings = EngineSettings(device, precision, tile_size, ensemble)
        self.ensemble = self.settings.ensemble
        self.model = load_model(model, task=task, device=self.settings.device)
        if self.model.in_channels != 1:
            raise ValueError(
                f"model {self.model.name!r} takes {self.model.in_channels} input channels; "
                "restore needs a 1-channel (gray / luma) model"
            )
        self.device = resolve_device(self.settings.device)
        self.precision = resolve_precision(self.settings.precision, self.device)
        self.halo = int(self.model.receptive_radius)
        self.align = int(self.model.alignment)  # tiles on the space-to-depth grid
        network = self.model.network
        self.blend = bool(getattr(network, "global_context", False))  # overlap blending instead of exact crops
        was_training = network.training
        module = self.model.inference_module()
        if module is network:  # nothing to fold: work on a copy, never on the caller's network
            module = copy.deepcopy(network)
        network.train(was_training)
        self.channels_last = use_channels_last(self.device, channels_last)
        module = module.eval().to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        requested = self.settings.tile_size
        self.tile = requested if requested is not None else default_tile_size(self.device, network, self.precision)

    @classmethod
    def build(cls, model, settings: EngineSettings, *, task=None) -> "Engine":
        """The engine of ``model`` for ``settings`` (an ``EngineSettings``)."""
        return cls(model, device=settings.device, precision=settings.precision, tile_size=settings.tile_size,
                   task=task, ensemble=settings.ensemble)

    def forward(self, window: np.ndarray, cancel=None) -> "torch.Tensor":  # noqa: F821
        """The network output for one 2-D float32 window, as a 2-D tensor on the device
        (averaged over the ensemble's transforms; ``cancel`` is checked between them)."""
        import torch

        from ..core.devices import autocast

        x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None, None].to(self.device)
        with torch.inference_mode(), autocast(self.device, self.precision):
            if self.ensemble == 1:
                y = self._run(x)
            else:
                y = ensemble_forward(self._run, x, self.ensemble, self.align, cancel)
        return y[0, 0]

    def _run(self, x):
        import torch

        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module(x)

    def runner(self) -> PlaneRunner:
        """A ``PlaneRunner`` starting at this engine's tile size."""
        return PlaneRunner(self)


class PlaneRunner:
    """One caller's tiled runs through an ``Engine``; ``tile`` is this caller's own."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.tile = engine.tile
        self.planes = 0  # planes started (a retried plane counts once)

    def tiles_per_plane(self, h: int, w: int) -> int:
        return count_tiles(h, w, self.tile, self.engine.align)

    def run(self, plane: np.ndarray, out: np.ndarray, cancel=None) -> Generator:
        """Restore ``plane`` into ``out`` (float32, same shape); yield once per tile.

        On out-of-memory the tile side is halved and the plane restarted
        (``RETILED`` is yielded first so the caller can recount tiles)."""
        engine = self.engine
        h, w = plane.shape
        self.planes += 1
        while True:
            try:
                tiles = tile_grid(h, w, self.tile, engine.halo, engine.align)
                if engine.blend and len(tiles) > 1:
                    yield from self._run_blended(plane, out, tiles, cancel)
                    return
                for tile in tiles:
                    check_cancel(cancel)
                    y = engine.forward(plane[tile.window_slices], cancel)[tile.crop]
                    out[tile.core_slices] = y.float().cpu().numpy()
                    del y
                    yield None
                return
            except Exception as exc:
                if not is_out_of_memory(exc) or self.tile <= MIN_RETRY_TILE:
                    raise
                if engine.device.type == "cuda":
                    import torch

                    torch.cuda.empty_cache()
                self.tile = max(MIN_RETRY_TILE, self.tile // 2)
                yield RETILED

    def _run_blended(self, plane: np.ndarray, out: np.ndarray, tiles, cancel) -> Generator:
        """Overlap blending (a global-context network): sum of weighted window outputs / sum of weights."""
        engine = self.engine
        h, w = plane.shape
        halo = align_up(engine.halo, engine.align)
        out[...] = 0.0
        total = np.zeros(plane.shape, dtype=np.float32)
        for tile in tiles:
            check_cancel(cancel)
            weight = blend_weights(tile, h, w, halo)
            y = engine.forward(plane[tile.window_slices], cancel).float().cpu().numpy()
            out[tile.window_slices] += weight * y
            total[tile.window_slices] += weight
            del y
            yield None
        np.divide(out, total, out=out)

    def restore(self, plane: np.ndarray, cancel=None) -> np.ndarray:
        """``run`` to the end: the restored float32 plane."""
        out = np.empty(plane.shape, dtype=np.float32)
        for _ in self.run(np.ascontiguousarray(plane, dtype=np.float32), out, cancel):
            pass
        return out
