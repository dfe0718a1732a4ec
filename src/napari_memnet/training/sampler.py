"""Random training batches: patches, 8-fold augmentation, on-the-fly degradation.

Patch positions, augmentations, SR scales and JPEG qualities come from a numpy
``Generator``; noise sigmas and the noise itself come from a ``torch.Generator``
on the training device. Both states are saved in checkpoints, so a resumed run
draws exactly the batches the uninterrupted run would have drawn.

* denoise: ``input = clean + N(0, sigma/255)``, sigma ~ U[lo, hi] per patch,
  on the device (batched).
* sr: the network input of an image at a scale (the image cropped to a multiple
  of the scale, MATLAB-bicubic down then up, as ``memnet eval`` and ``restore``
  see it) is deterministic, so it is computed once per image and scale, on first
  use, and kept; a patch is then cut at the same place of that input and of the
  clean image (``SRInputs``).
* deblock: a ``patch_size + 7`` uint8 patch is JPEG-encoded on the CPU (Pillow) at
  quality ~ U{lo..hi}, and a ``patch_size`` square is cut at a random offset so
  the 8x8 block grid falls at every phase.
* deblur: a ``patch_size + 2 r`` patch (r: the radius of the widest PSF of the
  range) is convolved on the device, each with its own PSF (``core.blur.draw_psf``:
  kind, width ~ U[lo, hi], angle, from the numpy generator; a grouped conv), the
  ``patch_size`` valid centre kept, plus white noise of sigma ~
  U(``core.tasks.DEBLUR_TRAIN_NOISE``) from the torch generator.
* real pairs: the same crop and augmentation of input and target, no degradation.
"""

from __future__ import annotations


import numpy as np
import torch

from .data import TrainItem

def crop_size(task: str, patch: int, levels, pairs: bool) -> int:
    """Side of the square a training image must hold (cut before degradation; for SR, the
    smallest image that still holds a patch once cropped to a multiple of every scale)."""
    if pairs:
        return patch
    if task == "sr":
        return patch + max(int(s) for s in levels) - 1
    if task == "deblock":
        return patch + 7
    if task == "deblur":
        return patch + 2 * blur_margin(levels)
    return patch


def blur_margin(levels) -> int:
    """The radius of the widest PSF the deblur range ``levels`` (lo, hi) can draw."""
    from ..core.blur import PSF_KINDS, psf_radius

    return max(psf_radius(kind, float(levels[1])) for kind in PSF_KINDS)


class SRInputs:
    """The SR network input of each training image at each scale, computed once (on first use)."""

    def __init__(self, items: list[TrainItem]):
        self.items = items
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def get(self, index: int, scale: int) -> np.ndarray:
        """``bicubic_degrade`` of image ``index`` cropped to a multiple of ``scale`` (float32)."""
        key = (index, int(scale))
        found = self._cache.get(key)
        if found is None:
            from ..core.degrade import bicubic_degrade, modcrop

            target = modcrop(self.items[index].target, int(scale))
            found = np.asarray(bicubic_degrade(target, int(scale)), dtype=np.float32)
            self._cache[key] = found
        return found


def augment(patch: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 dihedral transforms: rotate by k*90 degrees, then flip if k >= 4."""
    out = np.rot90(patch, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return out


class PatchSampler:
    """Draws (input, target) batches of shape (N, 1, P, P) on ``device``."""

    def __init__(self, items: list[TrainItem], task: str, levels, patch: int, seed: int, device):
        self.items = items
        self.task = task
        self.levels = tuple(levels)
        self.patch = int(patch)
        self.device = torch.device(device)
        self.pairs = items[0].input is not None
        self.crop = crop_size(task, patch, levels, self.pairs)
        too_small = [it.name for it in items if min(it.target.shape) < self.crop]
        if too_small:
            raise ValueError(f"images smaller than the {self.crop}x{self.crop} crop a patch needs: {', '.join(too_small)}")
        # weight images by how many patch positions they hold (uniform over pixels)
        counts = np.array([(it.target.shape[0] - self.crop + 1) * (it.target.shape[1] - self.crop + 1) for it in items], float)
        self.weights = counts / counts.sum()
        self.sr_inputs = SRInputs(items) if task == "sr" and not self.pairs else None
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(seed) + 1)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> tuple[dict, dict]:
        """(JSON-able numpy state, tensors) of both generators."""
        return {"numpy": self.rng.bit_generator.state}, {"torch": self.gen.get_state()}

    def load_state_dict(self, meta: dict, tensors: dict) -> None:
        self.rng.bit_generator.state = meta["numpy"]
        self.gen.set_state(tensors["torch"].to(torch.uint8).cpu())

    # ---------------------------------------------------------------- sampling
    def _crops(self, n: int, size: int):
        """n augmented crops (n, size, size) of targets, and of inputs for pairs."""
        idx = self.rng.choice(len(self.items), size=n, p=self.weights)
        tgt = np.empty((n, size, size), np.float32)
        inp = np.empty((n, size, size), np.float32) if self.pairs else None
        for j, i in enumerate(idx):
            item = self.items[i]
            h, w = item.target.shape
            y = int(self.rng.integers(0, h - size + 1))
            x = int(self.rng.integers(0, w - size + 1))
            k = int(self.rng.integers(0, 8))
            tgt[j] = augment(item.target[y:y + size, x:x + size], k)
            if inp is not None:
                inp[j] = augment(item.input[y:y + size, x:x + size], k)
        return tgt, inp

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, list]:
        """(input, target, per-sample levels) with input/target (n, 1, P, P) float32 on the device."""
        if self.sr_inputs is not None:
            return self._sr_batch(n)
        tgt, inp = self._crops(n, self.crop)
        dev = self.device
        if self.pairs:
            return _to(inp, dev), _to(tgt, dev), [None] * n
        if self.task == "denoise":
            target = _to(tgt, dev)
            lo, hi = self.levels
            sigma = lo + (hi - lo) * torch.rand(n, generator=self.gen, device=dev)
            noise = torch.randn(target.shape, generator=self.gen, device=dev)
            return target + noise * (sigma / 255.0).view(-1, 1, 1, 1), target, sigma.tolist()
        if self.task == "deblur":
            return self._blur_batch(tgt)
        return self._jpeg_batch(tgt)

    def _blur_batch(self, tgt: np.ndarray):
        """Each crop convolved with its own PSF (valid part: the patch), plus sensor noise."""
        from ..core.blur import draw_psf, make_psf
        from ..core.tasks import DEBLUR_TRAIN_NOISE

        n, p, dev = len(tgt), self.patch, self.device
        r = (self.crop - p) // 2
        kernels = np.empty((n, 1, 2 * r + 1, 2 * r + 1), np.float32)
        widths = []
        for j in range(n):
            kind, width, angle = draw_psf(self.rng, *self.levels)
            kernels[j, 0] = make_psf(kind, width, angle, radius=r)[::-1, ::-1]  # conv2d correlates
            widths.append(width)
        crops = torch.from_numpy(tgt).to(dev)
        weight = torch.from_numpy(kernels).to(dev)
        blurred = torch.nn.functional.conv2d(crops.unsqueeze(0), weight, groups=n).view(n, 1, p, p)
        target = crops[:, r:r + p, r:r + p].unsqueeze(1).contiguous()
        lo, hi = DEBLUR_TRAIN_NOISE
        sigma = lo + (hi - lo) * torch.rand(n, generator=self.gen, device=dev)
        noise = torch.randn(blurred.shape, generator=self.gen, device=dev)
        return blurred + noise * (sigma / 255.0).view(-1, 1, 1, 1), target, widths

    def _sr_batch(self, n: int):
        """n patches cut at the same place of an image's precomputed input at a drawn scale and of the image."""
        p = self.patch
        scales = self.rng.choice(np.asarray(self.levels), size=n)
        idx = self.rng.choice(len(self.items), size=n, p=self.weights)
        inp = np.empty((n, p, p), np.float32)
        tgt = np.empty((n, p, p), np.float32)
        for j, (i, s) in enumerate(zip(idx, scales)):
            low = self.sr_inputs.get(int(i), int(s))
            h, w = low.shape
            y = int(self.rng.integers(0, h - p + 1))
            x = int(self.rng.integers(0, w - p + 1))
            k = int(self.rng.integers(0, 8))
            inp[j] = augment(low[y:y + p, x:x + p], k)
            tgt[j] = augment(self.items[i].target[y:y + p, x:x + p], k)
        return _to(inp, self.device), _to(tgt, self.device), scales.tolist()

    def _jpeg_batch(self, tgt: np.ndarray):
        from ..core.degrade import jpeg_compress

        n, p = len(tgt), self.patch
        lo, hi = self.levels
        qualities = self.rng.integers(lo, hi + 1, size=n)
        offsets = self.rng.integers(0, self.crop - p + 1, size=(n, 2))
        inp = np.empty((n, p, p), np.float32)
        out = np.empty((n, p, p), np.float32)
        for j in range(n):
            t8 = np.round(np.clip(tgt[j], 0, 1) * 255).astype(np.uint8)
            jpg = jpeg_compress(np.ascontiguousarray(t8), int(qualities[j]))
            y, x = offsets[j]
            inp[j] = jpg[y:y + p, x:x + p].astype(np.float32) / 255
            out[j] = t8[y:y + p, x:x + p].astype(np.float32) / 255
        return _to(inp, self.device), _to(out, self.device), qualities.tolist()


def _to(arr: np.ndarray, device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(1)
    return t.to(device, non_blocking=True) if t.device != device else t
