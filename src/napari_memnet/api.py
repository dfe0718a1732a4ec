"""The public restore functions: ``restore`` and ``restore_iter``, sent to the
eager driver for numpy images and to the lazy dask path for dask/zarr images
or when a ``scheduler`` is given. (``fine_tune`` is ``training.api``'s.)"""

from __future__ import annotations

from .restoration.eager import check_image
from .restoration.eager import restore_iter as _eager_iter
from .restoration.events import Cancelled, RestoreResult, TileProgress
from .restoration.lazy.plan import is_lazy_input

__all__ = ["Cancelled", "RestoreResult", "TileProgress", "restore", "restore_iter"]


def restore_iter(image, task, *, scale=None, model=None, axes=None, device="auto", precision="auto",
                 tile_size=None, progress=None, cancel=None, chunks=None, scheduler=None, camera=False,
                 ensemble=1):
    """Generator form of ``restore``: yields ``TileProgress`` per tile, then one ``RestoreResult``.

    Arguments are those of ``restore``. Raises ``Cancelled`` (between tiles)
    when ``cancel`` is set; nothing partial is returned then. A dask or zarr
    image (or any image with a ``scheduler``) is computed block by block
    (``restoration.lazy.graph.restore_dask_iter``): one ``TileProgress`` per
    block, and the final ``RestoreResult`` holds the whole computed array."""
    if is_lazy_input(image) or scheduler is not None:
        if camera:
            raise ValueError("camera=True is for in-memory (numpy) images: load the planes, or restore "
                             "without it (dask, zarr and scheduler runs)")
        from .restoration.lazy.graph import restore_dask_iter
        from .restoration.lazy.plan import as_dask

        if not is_lazy_input(image):
            image = check_image(image)  # a numpy image for a scheduler: same checks, then dask
        yield from restore_dask_iter(as_dask(image), task, scale=scale, model=model, axes=axes,
                                     device=device, precision=precision, tile_size=tile_size,
                                     progress=progress, cancel=cancel, chunks=chunks, scheduler=scheduler,
                                     ensemble=ensemble)
        return
    if chunks is not None:
        raise ValueError("chunks applies only to dask/zarr images or with a scheduler")
    yield from _eager_iter(image, task, scale=scale, model=model, axes=axes, device=device, precision=precision,
                           tile_size=tile_size, progress=progress, cancel=cancel, camera=camera, ensemble=ensemble)


def restore(image, task, *, scale=None, model=None, axes=None, device="auto", precision="auto",
            tile_size=None, progress=None, cancel=None, chunks=None, scheduler=None, camera=False, ensemble=1):
    """Restore ``image`` for ``task`` ("denoise", "sr", "deblock" or "deblur") and return the result.

    * ``scale``: 2, 3 or 4 for "sr" (the output is that many times larger in Y and X).
    * ``model``: a bundled or user model name, a model file path, a loaded
      ``RestorationModel`` or a network; default: the task's bundled model.
    * ``axes``: e.g. "TZYX", "YXC" when the default for the shape is wrong.
    * ``device``: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N", "mps".
    * ``precision``: "auto" (bf16 on CUDA, fp16 on MPS, fp32 on CPU), "fp32", "bf16", "fp16".
    * ``tile_size``: tile core side in pixels; None chooses from device memory.
    * ``ensemble``: 1 (the network as it is) .. 8: average the network's outputs under that many
      dihedral transforms of the input (rotations, then flips); n times the time, a little
      more quality (8: +0.06 to +0.10 dB for the fast denoiser, docs/results.md "Self-ensemble").
    * ``progress(done, total)``: called after every tile.
    * ``cancel``: a callable returning True, or a ``threading.Event``, to stop
      between tiles with ``Cancelled``.

    * ``chunks`` / ``scheduler`` (big data, ``napari_memnet.restoration.lazy``):
      a dask or zarr ``image`` gives a LAZY dask array of the result
      (overlapping blocks with a halo of the receptive field, so it equals the
      in-memory result; nothing is computed until asked; ``chunks`` overrides
      the block size). With ``scheduler`` ("threads", "synchronous", a
      ``tcp://`` address of a dask.distributed scheduler, or a ``Client``) the
      blocks are computed there and a numpy array is returned, for numpy input too.

    * ``camera=True`` (task "denoise", a gray numpy image of camera counts: a plane or a stack of
      planes): photon (Poisson) plus read (Gaussian) noise; each plane is denoised behind the
      generalized Anscombe transform, its noise curve estimated from the plane itself
      (``core.camera.stabilise``; measured in docs/self-supervised.md).

    The input is never modified. Integer inputs come back in their dtype,
    floating-point ones as float32."""
    if is_lazy_input(image) and scheduler is None and not camera:
        from .restoration.lazy.graph import restore_dask

        return restore_dask(image, task, scale=scale, model=model, axes=axes, device=device,
                            precision=precision, tile_size=tile_size, chunks=chunks, ensemble=ensemble)
    result = None
    for item in restore_iter(image, task, scale=scale, model=model, axes=axes, device=device, precision=precision,
                             tile_size=tile_size, progress=progress, cancel=cancel, chunks=chunks,
                             scheduler=scheduler, camera=camera, ensemble=ensemble):
        result = item
    return result.data
