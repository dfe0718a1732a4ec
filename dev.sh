#!/usr/bin/env bash
# All set-up on a fresh Debian machine, then the job:
#   bash dev.sh demo   - the main job: restore the bundled sample (a napari window when a display exists)
#   bash dev.sh test   - the whole test suite (GUI tests under Xvfb, started by pytest-xvfb)
# Extra arguments are passed on (to pytest for `test`).
set -euo pipefail
cd "$(dirname "$0")"
job=${1:-test}
shift || true
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# 1. system packages: Qt under Xvfb (napari's GUI tests and the demo window)
APT_PACKAGES="xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0
  libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1 libfontconfig1 libdbus-1-3"
if command -v dpkg-query >/dev/null; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  if ! "$PYTHON" -c "import ensurepip, venv" 2>/dev/null; then
    missing="$missing python3-venv"
  fi
  if [ -n "$missing" ]; then
    echo "dev.sh: installing system packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi

# 2. the virtual environment: torch==2.13.0 FIRST (the CPU wheel; an unpinned
#    torch pulls several GB of CUDA packages), then the package with its extras
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q torch==2.13.0
  "$PY" -m pip install -q -e ".[testing,dask,bioimageio]"
  touch "$stamp"
fi

# 3. the job
case "$job" in
  test) exec "$PY" -m pytest -p no:cacheprovider "$@" ;;
  demo) exec "$PY" -m napari_memnet.demo "$@" ;;
  *) echo "usage: bash dev.sh {demo|test} [args]" >&2; exit 2 ;;
esac
