"""Does a space-to-depth denoiser depend on where the s-grid falls? The 4 grid phases, averaged.

    python benchmarks/phase_ensemble.py --model memnet-fast-denoise --sigmas 25,50 --json docs/results/phase_ensemble.json

A network with space-to-depth factor s sees the image cut into s x s cells that start at the top-left
corner: it is translation-equivariant only for shifts that are multiples of s. This restores each
image of ``bm3d_compare.py`` (the same images, the same seeded noise) s*s times, the noisy image shifted
by (dy, dx) in {0..s-1}^2 (padded at the top and left by reflection, the result cropped back), and reports
each phase's PSNR, their spread, and the PSNR of the average of the s*s results ("phase ensemble"). A large
gain of the average over the single phases on one image and not the others says the network's errors there
depend on the grid: the image has detail the s-grid cuts differently at each phase (e.g. fine stripes).
A diagnostic, not a product feature (the geometric self-ensemble is: ``--ensemble`` of the engine).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None) -> int:
    from bm3d_compare import SEEN_IN_TRAINING, image_arguments, images, noisy, parse_image_arguments

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    image_arguments(p)
    args = parse_image_arguments(p, argv)
    from napari_memnet.core.metrics import psnr
    from napari_memnet.restoration.eager import restore_plane
    from napari_memnet.restoration.engine import Engine

    engine = Engine(args.model, device="cpu", precision="fp32", task="denoise")
    s = int(engine.model.alignment)
    sigmas = [float(v) for v in args.sigmas.split(",")]
    rows = []
    for name, clean in images(args.data, args.image_dir, args.every).items():
        for sigma in sigmas:
            x = noisy(clean, name, sigma, args.seed)
            outs, phases = [], {}
            for dy in range(s):
                for dx in range(s):
                    shifted = np.pad(x, ((dy, 0), (dx, 0)), mode="reflect")
                    y = restore_plane(engine, shifted)[dy:, dx:]
                    outs.append(y)
                    phases[f"{dy},{dx}"] = psnr(y, clean)
            single = list(phases.values())
            row = {"image": name, "sigma": sigma, "seen_in_training": name in SEEN_IN_TRAINING,
                   "input_psnr": psnr(x, clean), "phases": phases, "phase_mean": float(np.mean(single)),
                   "phase_spread": float(np.max(single) - np.min(single)),
                   "average_psnr": psnr(np.mean(outs, axis=0), clean)}
            row["average_gain"] = row["average_psnr"] - row["phase_mean"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for sigma in sigmas:
        sel = [r for r in rows if r["sigma"] == sigma and not r["seen_in_training"]]
        summary[str(sigma)] = {k: float(np.mean([r[k] for r in sel])) for k in ("phase_mean", "average_psnr", "average_gain")}
        summary[str(sigma)]["images"] = len(sel)
        print(f"sigma {sigma:g}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary[str(sigma)].items()))
    if args.json:
        from napari_memnet.core.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"model": engine.model.name, "alignment": s, "command": " ".join(sys.argv),
                                       "seed": args.seed, "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
