"""What the geometric self-ensemble adds to a model's PSNR, and what it costs.

    python benchmarks/self_ensemble.py --model memnet-fast-denoise --datasets Set12 --levels 25,50 --members 1,8

For each ensemble size n, ``memnet eval``'s protocol (``evaluate`` with the
same seeded noise) with ``ensemble=n``: the model restores each image under the
first n of the 8 dihedral transforms and averages the outputs
(``napari_memnet.restoration.ensemble``). n = 1 is the plain model (the numbers
``memnet eval`` gives). Seconds are wall time for all images of a level in this
process (``--threads`` torch threads): the cost grows n times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="memnet-fast-denoise")
    parser.add_argument("--task", default="denoise")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "test"))
    parser.add_argument("--datasets", default="Set12")
    parser.add_argument("--levels", default="25,50")
    parser.add_argument("--members", default="1,2,4,8", help="ensemble sizes to measure (each 1..8)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch

    from napari_memnet.evaluate import evaluate

    torch.set_num_threads(args.threads)
    rows = {}
    for m in (int(v) for v in args.members.split(",")):
        for level in args.levels.split(","):
            start = time.perf_counter()
            for rec in evaluate(args.task, args.data, args.datasets.split(","), level, model=args.model,
                                device=args.device, ensemble=m):
                rows[(rec["dataset"], rec["level"], m)] = (rec["psnr"], time.perf_counter() - start)
    print(f"{args.model} ({args.task}), {args.threads} thread(s), {args.device}")
    print("| dataset | level | ensemble | PSNR | gain over 1 | seconds |")
    print("|---|---|---|---|---|---|")
    for (dataset, level, m), (value, seconds) in sorted(rows.items()):
        base = rows.get((dataset, level, 1), (None,))[0]
        gain = f"{value - base:+.3f}" if base is not None else "-"
        print(f"| {dataset} | {level:g} | {m} | {value:.3f} | {gain} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
