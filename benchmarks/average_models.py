"""Held-out validation of the average of several trained models of one architecture.

    PYTHONPATH=src python benchmarks/average_models.py A.safetensors B.safetensors [...] \
        --patch 64 --batch 32 --clean-dir .data/train400-train --val-dir .data/train400-val

Each input model is validated as saved; then their weights (every floating-point tensor but the
BatchNorm running statistics) are averaged with equal weights (or ``--weights``), the average's
BatchNorm statistics are recalibrated over ``--batches`` batches of ``--batch`` training patches of
``--patch`` px (``Trainer.recalibrate``: the trainer's sampler with its fixed recalibration seed, the
degradation of training; weights untouched), and the average is validated the same way: the run's
held-out images whole at ``--val-levels``, eval mode, fp32, as ``memnet train`` validates. Weight
averaging of points along one run (or of the ends of its warm restarts) is a way to a flatter,
better minimum without more training (stochastic weight averaging); this measures whether it pays.
Training images only for the statistics; ``--save DIR`` keeps the recalibrated average there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import heldout  # noqa: E402

_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def average_state(states: list[dict], weights: list[float]) -> dict:
    """The weighted mean of the floating-point tensors of ``states`` (BatchNorm statistics: the first's)."""
    if len({tuple(sorted(s)) for s in states}) != 1:
        raise SystemExit("the models do not have the same tensors: average models of one architecture only")
    total = sum(weights)
    out = {}
    for key, first in states[0].items():
        if not first.is_floating_point() or key.endswith(_BN_STATS):
            out[key] = first.clone()
            continue
        acc = sum(s[key].double() * (w / total) for s, w in zip(states, weights))
        out[key] = acc.to(first.dtype)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--weights", help="comma-separated averaging weights, one per model (default: equal)")
    p.add_argument("--patch", type=int, default=64)
    heldout.add_arguments(p, batch=32)
    p.add_argument("--name", default="averaged")
    p.add_argument("--save", type=Path, help="folder for the recalibrated average")
    p.add_argument("--skip-inputs", action="store_true", help="do not validate the input models again")
    args = p.parse_args(argv)
    weights = [1.0] * len(args.models) if not args.weights else [float(v) for v in args.weights.split(",")]
    if len(weights) != len(args.models) or min(weights) < 0 or sum(weights) <= 0:
        raise SystemExit("--weights: one non-negative weight per model, not all zero")

    from napari_memnet.models.files import load_model, save_model

    def row(label, v):
        print(heldout.row(label, v, args.val_levels), flush=True)

    print(heldout.header("model", args.val_levels))
    loaded = [load_model(m, device="cpu") for m in args.models]
    if not args.skip_inputs:
        for m in args.models:
            v = heldout.validate_model(m, args, patch=args.patch, recalibrate=False, name="input")
            row(f"{Path(m).stem} (as saved)", v)
    state = average_state([lm.network.state_dict() for lm in loaded], weights)
    net = loaded[0].network
    net.load_state_dict(state)
    card = loaded[0].card
    with tempfile.TemporaryDirectory() as tmp:
        save_model(net, args.name, task=card.get("task"), directory=tmp, levels=card.get("levels"),
                   description=f"weight average of {', '.join(Path(m).stem for m in args.models)}")
        v = heldout.validate_model(str(Path(tmp) / f"{args.name}.safetensors"), args, patch=args.patch,
                                   recalibrate=True, name=args.name, save_dir=str(args.save) if args.save else None)
    row(f"average ({', '.join(f'{w:g}' for w in weights)}), BatchNorm at {args.patch} px", v)


if __name__ == "__main__":
    main()
