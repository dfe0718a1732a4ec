"""Write measured numbers into a bundled model's card: what the default-model rule reads
(``napari_memnet.models.defaults``), from the JSON that ``memnet eval`` / ``memnet bench`` wrote.

    memnet eval --task denoise --data ../shared/data/test --datasets Set12 --levels 15,25,50 \\
        --model memnet-fast-denoise --device cpu --json docs/results/denoise-set12-memnet-fast-denoise.json
    python benchmarks/card_numbers.py memnet-fast-denoise \\
        --selection docs/results/denoise-set12-memnet-fast-denoise.json --command "memnet eval ..."

    memnet bench --sizes 2048 --no-reference --model memnet-fast-denoise --versus memnet-denoise \\
        --versus-max-tiles 4 --json docs/results/bench_fast_vs_paper_2048.json
    python benchmarks/card_numbers.py memnet-fast-denoise --speed docs/results/bench_fast_vs_paper_2048.json \\
        --kind cpu --command "memnet bench ..."     # the model's own row, or its --versus row

* ``--selection``: the mean PSNR over the task's selection benchmark (``core.tasks.Task.selection``:
  dataset and levels) from the eval records of that model; refused if a level is missing.
* ``--speed``: MP/s of the model at the bench's size (its restore case, or the --versus case when the
  model was the one compared against), under ``card["speed"][kind]``.

The weights are not touched (their sha256 in the card stays valid); the card is rewritten atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def selection_from(records: list, task: str, model: str) -> dict:
    from napari_memnet.core.tasks import get_task

    dataset, levels = get_task(task).selection
    mine = {float(r["level"]): r for r in records if r["dataset"] == dataset and r.get("model") == model}
    missing = [lv for lv in levels if float(lv) not in mine]
    if missing:
        raise SystemExit(f"the records hold no {dataset} result of {model!r} at levels {missing}")
    per_level = {str(lv): round(float(mine[float(lv)]["psnr"]), 4) for lv in levels}
    label = {"sigma": "sigma", "scale": "x", "quality": "q", "width": "PSF width"}[get_task(task).level_name]
    return {"benchmark": f"{dataset} {label} " + "/".join(str(lv) for lv in levels),
            "psnr": round(sum(per_level.values()) / len(per_level), 4), "per_level": per_level,
            "images": int(mine[float(levels[0])]["images"])}


def speed_from(bench: dict, model: str) -> dict:
    for row in bench["rows"]:
        for case, name in ((row["restore"], bench.get("model")), (row.get("versus"), (row.get("versus") or {}).get("model"))):
            if case and name == model and "mp_per_s" in case:
                return {"mp_per_s": round(case["mp_per_s"], 5), "size": row["size"], "complete": case.get("complete"),
                        "tiles_done": case.get("tiles_done"), "tiles_total": case.get("tiles_total"),
                        "peak_rss_gib": round(case["peak_rss_gib"], 3), "threads": case.get("threads"),
                        "date_utc": bench["environment"].get("date_utc")}
    raise SystemExit(f"no timed restore case of {model!r} in the bench results")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a bundled model name")
    p.add_argument("--selection", type=Path, metavar="EVAL.json")
    p.add_argument("--speed", type=Path, metavar="BENCH.json")
    p.add_argument("--kind", default="cpu", help="device kind of --speed (cpu, cuda, mps)")
    p.add_argument("--command", required=True, help="the command that measured it (written into the card)")
    args = p.parse_args(argv)
    from napari_memnet.core.atomic import atomic_write_text
    from napari_memnet.models.files import BUNDLED_DIR

    card_path = BUNDLED_DIR / f"{args.model}.json"
    card = json.loads(card_path.read_text())
    if args.selection:
        card["selection"] = {**selection_from(json.loads(args.selection.read_text()), card["task"], args.model),
                             "command": args.command, "records": str(args.selection)}
    if args.speed:
        card.setdefault("speed", {})[args.kind] = {**speed_from(json.loads(args.speed.read_text()), args.model),
                                                   "command": args.command, "records": str(args.speed)}
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    print(json.dumps({k: card.get(k) for k in ("selection", "speed")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
