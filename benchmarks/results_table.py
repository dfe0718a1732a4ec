"""The tables of docs/results.md, rendered from the records ``memnet eval --json`` wrote, beside the
published numbers of docs/evaluation.md (../shared/reference/MEMNET.md) and our Richardson-Lucy runs.

    python benchmarks/results_table.py sr memnet-fast-sr docs/results/sr-set5-memnet-fast-sr.json \\
        docs/results/sr-others-memnet-fast-sr.json docs/results/sr-urban100-memnet-fast-sr.json
    python benchmarks/results_table.py deblur mhnet-deblur docs/results/deblur-set12-mhnet-deblur.json \\
        docs/results/deblur-all-mhnet-deblur.json

One row per (dataset, level) of ``MODEL`` found in the records (a later file wins a repeated row):
the model's PSNR / SSIM, the baseline's (the degraded input; bicubic for SR), the gain, and the
reference columns of the task. Nothing is measured here: it only formats what the records hold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# task -> (baseline label, [(column, {(dataset, level): published PSNR})]); the targets of the issues
REFERENCES = {
    "denoise": ("noisy", [
        ("BM3D", {("BSD68", 15): 31.07, ("BSD68", 25): 28.57, ("BSD68", 50): 25.62}),
        ("DnCNN-S", {("BSD68", 15): 31.73, ("BSD68", 25): 29.23, ("BSD68", 50): 26.23}),
        ("RED30", {("BSD200", 30): 27.95, ("BSD200", 50): 25.75}),
    ]),
    "sr": ("bicubic", [
        ("SRCNN", {("Set5", 2): 36.66, ("Set5", 3): 32.75, ("Set5", 4): 30.48,
                   ("Set14", 2): 32.42, ("Set14", 3): 29.28, ("Set14", 4): 27.49}),
        ("VDSR", {("Set5", 2): 37.53, ("Set5", 3): 33.66, ("Set5", 4): 31.35}),
        ("MemNet (paper)", {("Set5", 2): 37.78, ("Set5", 3): 34.09, ("Set5", 4): 31.74,
                            ("Set14", 2): 33.28, ("Set14", 3): 30.00, ("Set14", 4): 28.26,
                            ("BSD100", 2): 32.08, ("BSD100", 3): 28.96, ("BSD100", 4): 27.40,
                            ("Urban100", 2): 31.31, ("Urban100", 3): 27.56, ("Urban100", 4): 25.50}),
    ]),
    "deblock": ("JPEG", [
        ("ARCNN", {("Classic5", 10): 29.03, ("Classic5", 20): 31.15, ("LIVE1", 10): 28.96, ("LIVE1", 20): 31.29}),
        ("DnCNN-3", {("Classic5", 10): 29.40, ("Classic5", 20): 31.63, ("LIVE1", 10): 29.19, ("LIVE1", 20): 31.59}),
    ]),
    "deblur": ("blurred", []),  # Richardson-Lucy comes from docs/results/deblur/richardson-lucy.json
}
RL_RECORD = ROOT / "docs" / "results" / "deblur" / "richardson-lucy.json"


def _records(paths, model: str) -> dict:
    rows = {}
    for path in paths:
        for r in json.loads(Path(path).read_text()):
            if r.get("model") == model:
                dataset = r["dataset"].removesuffix("_Y")  # Urban100_Y: the Y-only copy of Urban100
                rows[(dataset, float(r["level"]))] = r
    return rows


def _level(value: float) -> str:
    return f"{value:g}"


def table(task: str, model: str, paths) -> str:
    base_label, refs = REFERENCES[task]
    refs = list(refs)
    if task == "deblur" and RL_RECORD.exists():
        rl = json.loads(RL_RECORD.read_text())["by_iterations"]
        best = str(max(int(n) for n in rl))
        refs.append((f"Richardson-Lucy, true PSF, {best} it.",
                     {(d, float(w)): v[0] for d, per in rl[best].items() for w, v in per.items()}))
    refs = [(name, {(d, float(lv)): p for (d, lv), p in values.items()}) for name, values in refs]
    head = f"| set (all images) | level | {model} | {base_label} | gain | " + " | ".join(n for n, _ in refs) + " |"
    lines = [head, "|---" * (5 + len(refs)) + "|"]
    for (dataset, level), r in _records(paths, model).items():
        cells = [dataset, _level(level), f"{r['psnr']:.2f} / {r['ssim']:.4f}",
                 f"{r['baseline_psnr']:.2f} / {r['baseline_ssim']:.4f}", f"{r['psnr'] - r['baseline_psnr']:+.2f}"]
        cells += [f"{values[(dataset, level)]:.2f}" if (dataset, level) in values else "" for _, values in refs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=sorted(REFERENCES))
    p.add_argument("model")
    p.add_argument("records", nargs="+", type=Path, help="JSON files of memnet eval --json")
    args = p.parse_args(argv)
    print(table(args.task, args.model, args.records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
