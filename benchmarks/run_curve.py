"""The validation curve of ``memnet train`` runs, from their ``events.jsonl``, as a markdown table.

    python benchmarks/run_curve.py training-runs/fast-denoise runs/fast-dn-l1 --every 1000

One row per validation (every ``--every`` steps and the last): step, the run's wall-clock
minutes since its first event (pauses between pieces of a resumed run are not counted), and
the held-out PSNR with its levels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def curve(run: Path) -> list[dict]:
    rows, clock, last_time = [], 0.0, None
    for line in (run / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        t = event.get("time")
        if event["event"] == "started":
            last_time = t  # a resumed piece: its own clock starts here
            continue
        if t is not None and last_time is not None:
            clock += t - last_time
            last_time = t
        if event["event"] == "validation" and event["step"] > 0:
            rows.append({"step": event["step"], "minutes": clock / 60, "psnr": event["psnr"],
                         "per_level": event["per_level"]})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--every", type=int, default=500)
    args = p.parse_args(argv)
    curves = {run: curve(run) for run in args.runs}
    levels = sorted({k for rows in curves.values() for r in rows for k in r["per_level"]}, key=float)
    print(f"| run | step | minutes | val PSNR | levels {' / '.join(levels)} |\n|---|---|---|---|---|")
    for run, rows in curves.items():
        for i, r in enumerate(rows):
            if r["step"] % args.every and i != len(rows) - 1:
                continue
            lv = r["per_level"]
            levels = " / ".join(f"{lv[k]['psnr']:.2f}" for k in sorted(lv, key=float))
            print(f"| {run.name} | {r['step']} | {r['minutes']:.0f} | {r['psnr']:.3f} | {levels} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
