"""What an exported package says about itself: the README (the card's measured
numbers, the intensity and super-resolution conventions, the citation, the
licence) and the cover image (test input beside test output). Pure: no
bioimageio import."""

from __future__ import annotations

import json
import re

import numpy as np

LICENSE = "BSD-3-Clause"
# architecture -> (the paper's citation text, its address)
CITATIONS = {
    "memnet": ("Tai, Y., Yang, J., Liu, X., Xu, C.: MemNet: A Persistent Memory Network for Image "
               "Restoration. ICCV 2017", "https://arxiv.org/abs/1708.02209"),
    "red30": ("Mao, X.-J., Shen, C., Yang, Y.-B.: Image Restoration Using Very Deep Convolutional "
              "Encoder-Decoder Networks with Symmetric Skip Connections. NIPS 2016",
              "https://arxiv.org/abs/1603.09056"),
    "mhnet": ("Gao, H., Dang, D.: Mixed Hierarchy Network for Image Restoration. arXiv 2302.09554 (2023)",
              "https://arxiv.org/abs/2302.09554"),
}


# an absolute path (POSIX "/a/b/c", Windows "C:\\a\\b\\c") not inside a URL or a relative path: its last part
# is group 1
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])(?:[A-Za-z]:\\|/)(?:[^\s/\\]+[/\\])+([^\s/\\]+)")


def shareable_card(card):
    """``card`` with every absolute path in its strings cut to its last part ("/home/ann/data/cells" ->
    "cells"): a package is shared, and the folders a model was trained from on one machine say
    nothing on another but who trained it where. Relative paths and URLs are kept; a new object."""
    if isinstance(card, dict):
        return {key: shareable_card(value) for key, value in card.items()}
    if isinstance(card, (list, tuple)):
        return [shareable_card(value) for value in card]
    if isinstance(card, str):
        return _ABSOLUTE_PATH.sub(lambda m: m.group(1), card)
    return card


def citations(architecture: str) -> list[tuple[str, str]]:
    """The papers an exported package cites: its architecture's, and MemNet's (the plugin's method)."""
    keys = [architecture] if architecture in CITATIONS else []
    if "memnet" not in keys:
        keys.append("memnet")
    return [CITATIONS[k] for k in keys]


def _metrics_table(card: dict) -> list[str]:
    rows = card.get("metrics") or []
    if not rows:
        return ["The card records no measured numbers."]
    lines = ["| data | level | PSNR (dB) | input PSNR (dB) | step |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.get('dataset', '')} | {r.get('level', '')} | {r.get('psnr', '')} | "
                     f"{r.get('input_psnr', '')} | {r.get('step', '')} |")
    return lines


def readme(card: dict, *, task_label: str, scale: int, version: str, torchscript: bool) -> str:
    """The package's README.md, from the model card."""
    name, arch = card.get("name", "model"), card.get("architecture", "")
    sr = scale > 1
    lines = [
        f"# {name}: {task_label}{f' x{scale}' if sr else ''} ({arch})",
        "",
        f"Exported by napari-memnet {version} (`memnet export-bioimageio`). {card.get('description', '')}".rstrip(),
        "",
        "## Input and output",
        "",
        "- One gray channel (for colour images: the Y channel of MATLAB's YCbCr; napari-memnet restores the "
        "luma and carries the chroma), axes `batch, channel, y, x`, float32.",
        "- **Intensities on the 8-bit scale 0..255** (an 8-bit image as float). Preprocessing divides by 255 "
        "(the network works on 0..1), postprocessing multiplies by 255; the output is not clipped or rounded. "
        "This is what `napari_memnet.restore` does for 8-bit data (uint8, or whole numbers in 0..255). For "
        "16-bit microscopy images `restore` instead maps the 0.1st..99.9th percentiles to 0..1 and back; a "
        "package has one fixed map, so rescale such images to 0..255 first (or use napari-memnet).",
    ]
    if sr:
        lines += [
            f"- **Super-resolution x{scale}**: the output is {scale} times the input in y and x. napari-memnet's "
            "SR networks (like the MemNet paper's) take the MATLAB-bicubic-upsampled low-resolution image; the "
            f"package's architecture (`{card.get('architecture', '')}` with `OnBicubicInput`) does that upsampling "
            "itself, as the first layer (MATLAB `imresize` bicubic, symmetric borders; its taps are the "
            "`upsample_taps` keyword arguments), so the package takes the low-resolution image itself. The "
            "state dict is the plain network's.",
        ]
    lines += [
        "",
        "## Weights",
        "",
        "- `pytorch_state_dict`: the network's own module (`architecture` file), built with the keyword "
        "arguments in rdf.yaml; the tensors are napari-memnet's model file, unchanged.",
        "- `torchscript`: the same network traced." if torchscript else
        "- no TorchScript: the network did not trace to a module that generalises to other sizes.",
        "",
        "## Architecture",
        "",
        f"`{arch}` with `{json.dumps(card.get('config', {}))}`; receptive radius "
        f"{card.get('receptive_radius', '?')} px (the halo of the output axes).",
        "",
        "## Measured (from the napari-memnet model card)",
        "",
        *_metrics_table(card),
    ]
    selection = card.get("selection")
    if selection:
        lines += ["", f"Selection benchmark ({selection.get('benchmark')}): mean PSNR {selection.get('psnr')} dB, "
                  f"per level {json.dumps(selection.get('per_level'))}; command: `{selection.get('command')}`."]
    speed = card.get("speed") or {}
    for kind, row in speed.items():
        lines.append(f"\nSpeed on {kind}: {row.get('mp_per_s')} MP/s at {row.get('size')} px "
                     f"({row.get('threads', '?')} threads; `{row.get('command', '')}`).")
    steps = (card.get("training") or {}).get("steps")
    if steps is not None:
        lines.append(f"\nTraining: {steps} steps; the card in `config.napari_memnet.card` of rdf.yaml has the "
                     "whole record.")
    lines += ["", "## Validation", "",
              "The test input is a degraded crop of a public-domain image (or an image given at export); the "
              "test output is what `napari_memnet.restore` made of it on the CPU in fp32, so the validator "
              "(`bioimageio test PACKAGE.zip`, bioimageio.core) checks that the package reproduces napari-memnet. "
              "How the bundled models' packages were validated: napari-memnet's docs/bioimageio.md."]
    lines += ["", "## Citation", ""]
    lines += [f"- {text} ({url})" for text, url in citations(arch)]
    lines += ["", "## Licence", "", f"{LICENSE} (napari-memnet's licence, for the weights and the code).", "",
              "## In napari-memnet", "", "```bash", "memnet import-bioimageio THIS_PACKAGE.zip", "```", ""]
    return "\n".join(lines)


def cover(test_input: np.ndarray, test_output: np.ndarray) -> np.ndarray:
    """A uint8 picture: the test input (nearest-upscaled to the output's size) beside the output,
    both enlarged by pixel repetition to at least 256 px high."""
    out = np.asarray(test_output, dtype=np.float32)
    inp = np.asarray(test_input, dtype=np.float32)
    ry, rx = out.shape[0] // inp.shape[0], out.shape[1] // inp.shape[1]
    inp = np.repeat(np.repeat(inp, ry, axis=0), rx, axis=1)[: out.shape[0], : out.shape[1]]
    both = np.concatenate([inp, out], axis=1)
    zoom = max(1, -(-256 // both.shape[0]))
    both = np.repeat(np.repeat(both, zoom, axis=0), zoom, axis=1)
    return np.clip(np.rint(both), 0, 255).astype(np.uint8)
