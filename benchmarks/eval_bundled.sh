#!/usr/bin/env bash
# Evaluate the bundled models with the paper's protocol (memnet eval) and write
# the JSON records to docs/results/. M6R6 costs 5.8 TFLOP per megapixel: on a
# 2-core CPU that is minutes per image, so by default only the first MAX images
# of each set are used (MAX=1); set MAX=0 (on a GPU) for the full sets.
#   bash benchmarks/eval_bundled.sh [denoise|sr|deblock ...]
# Full run (GPU): MAX=0 SR_SETS=Set5,Set14,BSD100,Urban100_Y JPEG_LEVELS=10,20,30,40 bash benchmarks/eval_bundled.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${NAPARI_MEMNET_DATA:-../shared/data}/test
MAX=${MAX:-1}
PY=${PY:-.venv/bin/python}
OUT=docs/results
mkdir -p "$OUT"
limit=()
[ "$MAX" != 0 ] && limit=(--max-images "$MAX")
memnet() { PYTHONPATH=src "$PY" -m napari_memnet "$@"; }
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(denoise sr deblock)
for task in "${tasks[@]}"; do
  case $task in
    denoise)
      memnet eval --task denoise --data "$DATA" --datasets Set12,BSD68 --levels 15,25,50 \
        --model memnet-denoise "${limit[@]}" --json "$OUT/denoise.json"
      memnet eval --task denoise --data "$DATA" --datasets BSD200 --levels 30,50 \
        --model memnet-denoise "${limit[@]}" --json "$OUT/denoise-bsd200.json" ;;
    sr)
      memnet eval --task sr --data "$DATA" --datasets ${SR_SETS:-Set5,Set14} --levels 2,3,4 \
        --model memnet-sr "${limit[@]}" --json "$OUT/sr.json" ;;
    deblock)
      memnet eval --task deblock --data "$DATA" --datasets Classic5,LIVE1 --levels ${JPEG_LEVELS:-10,20} \
        --model memnet-deblock "${limit[@]}" --json "$OUT/deblock.json" ;;
    *) echo "unknown task $task" >&2; exit 2 ;;
  esac
done
