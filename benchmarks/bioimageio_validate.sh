#!/usr/bin/env bash
# The BioImage Model Zoo check of the bundled models (docs/bioimageio.md): export
# memnet-fast-denoise and memnet-sr x2 as bioimage.io packages and run the reference
# validator (`bioimageio test`, bioimageio.core) on each; its summaries go to
# docs/results/bioimageio/. Needs the 'bioimageio' extra. About 10 minutes on 2 CPU cores.
#   bash benchmarks/bioimageio_validate.sh [PACKAGE_DIR]   (default: a new temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out" docs/results/bioimageio
status=0
for spec in "memnet-fast-denoise:" "memnet-fast-sr:--scale 2" "memnet-sr:--scale 2"; do
  model=${spec%%:*}; extra=${spec#*:}; tag=$model${extra:+-x${extra##* }}
  start=$(date +%s)
  .venv/bin/memnet export-bioimageio "$model" "$out/$tag.zip" $extra
  echo "$tag: exported in $(( $(date +%s) - start )) s"
  start=$(date +%s)
  if .venv/bin/bioimageio test "$out/$tag.zip" --summary "[display, docs/results/bioimageio/$tag.md]"; then
    echo "$tag: bioimageio test passed in $(( $(date +%s) - start )) s"
  else
    echo "$tag: bioimageio test FAILED"; status=1
  fi
done
exit $status
