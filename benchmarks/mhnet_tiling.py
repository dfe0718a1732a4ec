"""MHNet's seam error: tiled (overlap blending, and plain halo crops for comparison) against untiled.

    python benchmarks/mhnet_tiling.py                          # a small MHNet with random block scales
    python benchmarks/mhnet_tiling.py --model PATH.safetensors # a trained one
    python benchmarks/mhnet_tiling.py --image ../shared/data/test/BSD68/test001.png --tiles 64,128,256

MHNet's receptive field is global (channel attention pools over the whole input, the bottleneck's
linear attention mixes every pixel), so a tile sees other statistics than the whole image. The
engine blends overlapping tiles (``core.tiling.blend_weights``); this prints, per tile side, the
largest absolute difference, the RMS difference and the PSNR of the tiled result against the
untiled one, for blending and for plain crops (``Engine.blend = False``), and the RMS of what the
network changes (its residual) for scale. The random network is the tests' (``tests/_nets.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="an MHNet model file (default: a small one with random block scales)")
    p.add_argument("--image", type=Path, default=ROOT.parent / "shared" / "data" / "test" / "BSD68" / "test001.png")
    p.add_argument("--tiles", default="64,128,256")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch
    from PIL import Image

    from napari_memnet.core.metrics import psnr
    from napari_memnet.restoration.engine import Engine

    torch.set_num_threads(args.threads)
    if args.model:
        model = args.model
    else:
        from _nets import random_mhnet

        model = random_mhnet()
    with Image.open(args.image) as im:
        img = np.asarray(im.convert("L"), np.float32) / 255.0
    untiled = Engine(model, device="cpu", precision="fp32", tile_size=8192).runner().restore(img)
    print(f"{args.image.name} {img.shape[1]}x{img.shape[0]}; model {args.model or 'random MHNet C8 depth 2'}; "
          f"residual RMS {np.sqrt(np.mean((untiled - img) ** 2)):.4f}")
    print("tile  mode    halo  max|diff|   RMS diff  PSNR vs untiled (dB)")
    for tile in (int(t) for t in args.tiles.split(",")):
        for blend in (True, False):
            engine = Engine(model, device="cpu", precision="fp32", tile_size=tile)
            engine.blend = blend
            diff = engine.runner().restore(img) - untiled
            print(f"{tile:4d}  {'blend' if blend else 'crop ':5s}  {engine.halo:4d}  {np.abs(diff).max():9.5f}  "
                  f"{np.sqrt(np.mean(diff ** 2)):9.5f}  {psnr(untiled + diff, untiled):6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
