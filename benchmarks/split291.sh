#!/usr/bin/env bash
# The fixed split of the "291 images" (T91 + BSDS500 train, the paper's SR and JPEG training set)
# used by the fast SR and deblocking studies and training runs (issue #15): every 20th BSD200
# image in name order (10 images) is held out for validation and model selection; T91 and the
# other 190 are the training images. No test set is touched (Set5, Set14, BSD100, Urban100,
# Classic5 and LIVE1 are only for the final evaluation).
# Writes symlink folders (ignored by git):  .data/train291-train/  .data/train291-val/
set -euo pipefail
cd "$(dirname "$0")/.."
data=${NAPARI_MEMNET_DATA:-../shared/data}/train
for d in T91 BSD200; do [ -d "$data/$d" ] || { echo "no $d folder at $data/$d" >&2; exit 1; }; done
data=$(cd "$data" && pwd)
rm -rf .data/train291-train .data/train291-val
mkdir -p .data/train291-train .data/train291-val
for f in "$data"/T91/*; do ln -s "$f" .data/train291-train/; done
i=0
for f in $(ls "$data"/BSD200/* | sort); do
  i=$((i + 1))
  if (( i % 20 == 0 )); then ln -s "$f" .data/train291-val/; else ln -s "$f" .data/train291-train/; fi
done
echo "train: $(ls .data/train291-train | wc -l) images, validation: $(ls .data/train291-val | wc -l) images"
