# Two entry points, both doing all set-up on a fresh Debian machine:
#   make demo   - the main job: restore the bundled sample (napari window if a display exists)
#   make test   - the whole test suite (GUI tests under Xvfb)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 \
	libxcb-render-util0 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1 libfontconfig1 libdbus-1-3

.PHONY: demo test system venv clean

system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[testing,dask]"
	@touch $(STAMP)

venv: system $(STAMP)

test: venv
	$(PY) -m pytest -p no:cacheprovider

demo: venv
	$(PY) -m napari_memnet.demo

clean:
	rm -rf $(VENV) build dist src/*.egg-info
