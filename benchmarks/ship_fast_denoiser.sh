#!/usr/bin/env bash
# Ship the fast denoiser of a training run into the package, with its measured numbers.
#
#   bash benchmarks/ship_fast_denoiser.sh runs/fast-dn-l2            # RUN_DIR of `memnet train`
#
# 1. Picks the run's model with the higher held-out validation PSNR (Train400 images never trained
#    on): OUT/best/NAME (the best validation so far) or OUT/NAME (the end of the run, recalibrated).
# 2. Copies it to src/napari_memnet/weights/memnet-fast-denoise.{safetensors,json}.
# 3. Measures what the default-model rule reads and writes it into the cards (benchmarks/card_numbers.py):
#    the selection PSNR (memnet eval, Set12 sigma 15/25/50) and the CPU speed at 2048 px
#    (memnet bench, the fast model then the paper model in one run).
# 4. Evaluates on BSD68 (15/25/50) and BSD200 (30/50/70), and against BM3D (benchmarks/bm3d_compare.py).
# Records go to docs/results/. Test sets are used here only, after training and selection.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: ship_fast_denoiser.sh RUN_DIR}
name=memnet-fast-denoise
data=${NAPARI_MEMNET_DATA:-../shared/data}/test
py=${PY:-.venv/bin/python}
memnet=${MEMNET:-.venv/bin/memnet}
res=docs/results

pick=$("$py" - "$run" "$name" <<'EOF'
import json, sys
from pathlib import Path
run, name = Path(sys.argv[1]), sys.argv[2]
best = []
for path in (run / "best" / f"{name}.json", run / f"{name}.json"):
    if path.exists():
        psnr = json.loads(path.read_text())["training"].get("validation_psnr_after")
        if psnr is not None:
            best.append((psnr, str(path.with_suffix(""))))
print(max(best)[1])
EOF
)
echo "shipping $pick"
cp "$pick.safetensors" "src/napari_memnet/weights/$name.safetensors.tmp"
mv "src/napari_memnet/weights/$name.safetensors.tmp" "src/napari_memnet/weights/$name.safetensors"
cp "$pick.json" "src/napari_memnet/weights/$name.json.tmp"
mv "src/napari_memnet/weights/$name.json.tmp" "src/napari_memnet/weights/$name.json"

sel="$memnet eval --task denoise --data $data --datasets Set12 --levels 15,25,50 --model $name --device cpu --json $res/denoise-set12-$name.json"
$sel
"$py" benchmarks/card_numbers.py $name --selection $res/denoise-set12-$name.json --command "$sel"

bench="$memnet bench --sizes 2048 --no-reference --model $name --versus memnet-denoise --versus-max-tiles 3 --json $res/bench_cpu_2048_fast_vs_paper.json"
$bench
"$py" benchmarks/card_numbers.py $name --speed $res/bench_cpu_2048_fast_vs_paper.json --kind cpu --command "$bench"
"$py" benchmarks/card_numbers.py memnet-denoise --speed $res/bench_cpu_2048_fast_vs_paper.json --kind cpu --command "$bench"

$memnet eval --task denoise --data "$data" --datasets BSD68 --levels 15,25,50 --model $name --device cpu \
  --json $res/denoise-bsd68-$name.json
$memnet eval --task denoise --data "$data" --datasets BSD200 --levels 30,50,70 --model $name --device cpu \
  --json $res/denoise-bsd200-$name.json
"$py" benchmarks/bm3d_compare.py --model $name --sigmas 25,50 --json $res/bm3d_compare_$name.json
