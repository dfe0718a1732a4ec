#!/usr/bin/env bash
# Ship the fast model of a training run into the package, with its measured numbers.
#
#   bash benchmarks/ship_fast_model.sh denoise training-runs/fast-denoise
#   bash benchmarks/ship_fast_model.sh sr      training-runs/fast-sr
#   bash benchmarks/ship_fast_model.sh deblock training-runs/fast-deblock
#   NAME=mhnet-deblur bash benchmarks/ship_fast_model.sh deblur training-runs/mhnet-deblur
#
# NAME: the shipped model's name (default memnet-fast-TASK). RUN_NAME: the run's model name when it differs
# (a grown model's run: RUN_NAME=memnet-fast-sr-m3r4 bash ... sr training-runs/fast-sr-m3r4 ships it as memnet-fast-sr). deblur has no paper model: its speed is
# measured against the fast denoiser (the same CPU budget class) instead.
#
# 1. Picks the run's model with the higher held-out validation PSNR (training images held out by
#    denoise_split.sh / split291.sh): RUN/best/NAME (the best validation so far) or RUN/NAME (the end).
# 2. Copies it to src/napari_memnet/weights/memnet-fast-TASK.{safetensors,json}.
# 3. Measures what the default-model rule reads and writes it into the cards (benchmarks/card_numbers.py):
#    the selection PSNR (memnet eval on the task's selection set: Set12 / Set5 / Classic5) and the CPU
#    speed at 2048 px (memnet bench, the fast model then the paper model in one run).
# 4. Evaluates on the task's other benchmark sets (denoise: BSD68, BSD200 and BM3D; sr: Set14, BSD100,
#    Urban100; deblock: LIVE1). Records go to docs/results/. Test sets are used only here, after
#    training and model selection.
# denoise needs the bm3d package in the venv for step 4 (checked first: pip install bm3d).
# SKIP_BENCH=1 skips step 3's bench (the cards' speed is then read from its last record). Without it the script
# refuses to start while the 1-minute load average is above MAX_LOAD (0.5). URBAN_MAX: see below.
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:?usage: ship_fast_model.sh TASK RUN_DIR}
run=${2:?usage: ship_fast_model.sh TASK RUN_DIR}
name=${NAME:-memnet-fast-$task}
run_name=${RUN_NAME:-$name}
paper=memnet-$task
[ "$task" = deblur ] && paper=memnet-fast-denoise
data=${NAPARI_MEMNET_DATA:-../shared/data}/test
py=${PY:-.venv/bin/python}
memnet=${MEMNET:-.venv/bin/memnet}
res=docs/results
case $task in
  denoise) selset=Set12; sellevels=15,25,50 ;;
  sr) selset=Set5; sellevels=2,3,4 ;;
  deblock) selset=Classic5; sellevels=10,20,30,40 ;;
  deblur) selset=Set12; sellevels=2,3 ;;
  *) echo "unknown task $task" >&2; exit 2 ;;
esac

# The cards' speed decides the default model (its 0.1 MP/s usability bar), so the bench runs only on an idle
# machine: checked here, before anything is copied (a bench beside a training run measured the fast deblocker
# at 0.097 MP/s, 0.213 idle; 2026-11-29). The script's own evaluations run one after another, not beside it.
if [ -z "${SKIP_BENCH:-}" ]; then
  load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
  if "$py" -c "import sys; sys.exit(float(sys.argv[1]) <= float(sys.argv[2]))" "$load" "${MAX_LOAD:-0.5}"; then
    echo "the machine is busy (1-minute load average $load > MAX_LOAD=${MAX_LOAD:-0.5}): its bench would understate" >&2
    echo "the speed the default-model rule reads. Stop the other work and wait a minute, or SKIP_BENCH=1." >&2
    exit 3
  fi
fi

# the denoiser's last step compares with BM3D (not a dependency of the package): refuse before copying anything
if [ "$task" = denoise ] && ! "$py" -c "import bm3d" 2>/dev/null; then
  echo "the BM3D comparison needs the bm3d package: $py -m pip install bm3d" >&2
  exit 4
fi

pick=$("$py" - "$run" "$run_name" <<'PY'
import json, sys
from pathlib import Path
run, name = Path(sys.argv[1]), sys.argv[2]
best = []
for path in (run / "best" / f"{name}.json", run / f"{name}.json"):
    if path.exists():
        psnr = json.loads(path.read_text())["training"].get("validation_psnr_after")
        if psnr is not None:
            best.append((psnr, str(path.with_suffix(""))))
if not best:
    sys.exit(f"no validated model {name} in {run} (nor in {run}/best)")
print(max(best)[1])
PY
)
echo "shipping $pick"
for ext in safetensors json; do
  cp "$pick.$ext" "src/napari_memnet/weights/$name.$ext.tmp"
  mv "src/napari_memnet/weights/$name.$ext.tmp" "src/napari_memnet/weights/$name.$ext"
done
# the card names the model: the shipped name (a model's name is its card's, models/files.py)
"$py" - "src/napari_memnet/weights/$name.json" "$name" <<'PY'
import json, os, sys
path, name = sys.argv[1], sys.argv[2]
card = json.load(open(path))
if card.get("name") != name:
    card["name"] = name
    with open(path + ".tmp", "w") as f:
        json.dump(card, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
PY

sel_json=$res/$task-$(echo $selset | tr A-Z a-z)-$name.json
sel="$memnet eval --task $task --data $data --datasets $selset --levels $sellevels --model $name --device cpu --json $sel_json"
$sel
"$py" benchmarks/card_numbers.py $name --selection $sel_json --command "$sel"

bench_json=$res/bench_cpu_2048_$name-vs-paper.json
[ $task = denoise ] && bench_json=$res/bench_cpu_2048_fast_vs_paper.json
[ $task = deblur ] && bench_json=$res/bench_cpu_2048_$name-vs-fast-denoise.json
bench="$memnet bench --sizes 2048 --no-reference --model $name --versus $paper --versus-max-tiles 3 --json $bench_json"
[ -z "${SKIP_BENCH:-}" ] && $bench
# the card copied from the run has no speed: write it from this bench (or, with SKIP_BENCH, the last one)
"$py" benchmarks/card_numbers.py $name --speed $bench_json --kind cpu --command "$bench"
[ "$task" = deblur ] || "$py" benchmarks/card_numbers.py $paper --speed $bench_json --kind cpu --command "$bench"

case $task in
  denoise)
    $memnet eval --task denoise --data "$data" --datasets BSD68 --levels 15,25,50 --model $name --device cpu \
      --json $res/denoise-bsd68-$name.json
    $memnet eval --task denoise --data "$data" --datasets BSD200 --levels 30,50,70 --model $name --device cpu \
      --json $res/denoise-bsd200-$name.json
    # BM3D's side of the record it replaces is reused where the noisy inputs are the same (bm3d_compare.py)
    bm3d_json=$res/bm3d_compare_$name.json
    "$py" benchmarks/bm3d_compare.py --model $name --sigmas 25,50 \
      $([ -f $bm3d_json ] && echo --bm3d-from $bm3d_json) --json $bm3d_json ;;
  sr)
    $memnet eval --task sr --data "$data" --datasets Set14,BSD100 --levels 2,3,4 --model $name \
      --device cpu --json $res/sr-others-$name.json
    # Urban100 (100 images of ~1024x680) takes ~10 minutes on 2 cores: URBAN_MAX=N evaluates the first N only
    $memnet eval --task sr --data "$data" --datasets Urban100_Y --levels 2,3,4 --model $name --device cpu \
      ${URBAN_MAX:+--max-images $URBAN_MAX} --json $res/sr-urban100-$name.json ;;
  deblock)
    $memnet eval --task deblock --data "$data" --datasets LIVE1 --levels 10,20,30,40 --model $name \
      --device cpu --json $res/deblock-live1-$name.json ;;
  deblur)
    $memnet eval --task deblur --data "$data" --datasets Set12,BSD68,Classic5 --levels 1,2,3 --model $name \
      --device cpu --json $res/deblur-all-$name.json ;;
esac
