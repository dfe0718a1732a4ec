#!/usr/bin/env bash
# Copy the training images the GPU scripts need into .data/ of this checkout (an ignored folder),
# so they travel with it to the GPU machine (device tool: carry [".data"]; 64 MiB at most in all).
#
#   bash benchmarks/gpu/prepare_data.sh              # .data/train/{Train400,T91,BSD200}, .data/val/{Train400,291}
#   bash benchmarks/gpu/prepare_data.sh --with-test  # and .data/test/{Set12,Set5,Classic5} for memnet eval there
#   TRAIN_SETS=Train400 bash benchmarks/gpu/prepare_data.sh   # only the denoising set (a fast denoiser's sprint)
#
# The device tool moves at most 64 MiB in all: the checkout's tracked and untracked-not-ignored files
# PLUS what is carried. So the size check at the end counts both (tests/test_package.py keeps the
# tracked files under 48 MiB; a finished run's checkpoint leaves git, training-runs/README.md).
#
# Train400 is the denoising set; T91 + BSD200 (the paper's "291 images") serve SR and deblocking.
# .data/val/ holds copies of the fixed validation images of the CPU runs (benchmarks/denoise_split.sh,
# benchmarks/split291.sh, which hold the rule): a sprint given --val-dir .data/val/Train400 validates on
# the images the CPU runs did, and leaves them out of training. (The split scripts' own folders are
# symlinks into ../shared: they travel to the GPU machine only as links, so the copies here are what it reads.)
# Source: $NAPARI_MEMNET_DATA or ../shared/data beside the checkout. Only the named sets are replaced;
# anything else already in .data/ stays (and is counted). Prints the size and fails when .data/
# exceeds the carry limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC="${NAPARI_MEMNET_DATA:-../shared/data}"
LIMIT_KIB=$((64 * 1024))
TRAIN_SETS="${TRAIN_SETS:-Train400 T91 BSD200}"
TEST_SETS="Set12 Set5 Classic5"
with_test=0
for arg in "$@"; do
  case "$arg" in
    --with-test) with_test=1 ;;
    *) echo "usage: bash benchmarks/gpu/prepare_data.sh [--with-test]" >&2; exit 2 ;;
  esac
done

copy_sets() {  # copy_sets KIND SET...: $SRC/KIND/SET -> .data/KIND/SET
  local kind=$1; shift
  mkdir -p ".data/$kind"
  for set in "$@"; do
    if [ ! -d "$SRC/$kind/$set" ]; then
      echo "prepare_data.sh: $SRC/$kind/$set not found" >&2
      exit 1
    fi
    rm -rf ".data/$kind/$set"
    cp -r "$SRC/$kind/$set" ".data/$kind/$set"
    echo "  .data/$kind/$set: $(find ".data/$kind/$set" -type f | wc -l) files, $(du -sh ".data/$kind/$set" | cut -f1)"
  done
}

echo "copying from $SRC:"
copy_sets train $TRAIN_SETS
bash benchmarks/denoise_split.sh >/dev/null
bash benchmarks/split291.sh >/dev/null
for pair in "train400-val Train400" "train291-val 291"; do
  set -- $pair
  rm -rf ".data/val/$2" && mkdir -p ".data/val/$2" && cp -L ".data/$1"/* ".data/val/$2/"
  echo "  .data/val/$2: $(ls ".data/val/$2" | wc -l) files (the fixed validation split, copied)"
done
if [ "$with_test" = 1 ]; then
  copy_sets test $TEST_SETS
fi
git check-ignore -q .data || { echo "prepare_data.sh: .data/ is not ignored by git" >&2; exit 1; }
data_kib=$(du -sk .data | cut -f1)
tree_kib=$(( $(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) / 1024 ))
total_kib=$((data_kib + tree_kib))
echo ".data/: $(du -sh .data | cut -f1) (${data_kib} KiB); the working tree that travels with it: ${tree_kib} KiB;"
echo "together ${total_kib} KiB, of the ${LIMIT_KIB} KiB the device tool moves"
if [ "$total_kib" -gt "$LIMIT_KIB" ]; then
  echo "prepare_data.sh: the working tree and .data/ together are larger than the 64 MiB the device tool moves;" >&2
  echo "  copy fewer sets (TRAIN_SETS=Train400 for the denoiser) or carry less" >&2
  exit 1
fi
