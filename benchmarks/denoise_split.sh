#!/usr/bin/env bash
# The fixed split of Train400 used by the fast-denoiser study and its training runs:
# every 50th image (test_050, test_100, ..., test_400: 8 images) is held out for
# validation and model selection; the other 392 are the training images. Neither
# set touches a test set (BSD68, Set12, BSD200 are only for the final evaluation).
# Writes symlink folders (ignored by git):  .data/train400-train/  .data/train400-val/
set -euo pipefail
cd "$(dirname "$0")/.."
src=${NAPARI_MEMNET_DATA:-../shared/data}/train/Train400
[ -d "$src" ] || { echo "no Train400 folder at $src" >&2; exit 1; }
src=$(cd "$src" && pwd)
rm -rf .data/train400-train .data/train400-val
mkdir -p .data/train400-train .data/train400-val
for f in "$src"/*.png; do
  n=$(basename "$f" .png); n=${n#test_}
  if (( 10#$n % 50 == 0 )); then ln -s "$f" .data/train400-val/; else ln -s "$f" .data/train400-train/; fi
done
echo "train: $(ls .data/train400-train | wc -l) images, validation: $(ls .data/train400-val | wc -l) images"
