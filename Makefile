# hmrkit set-up and everyday commands.  `make demo` and `make test` create the project's
# own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri

.PHONY: venv models demo test test-fast lint bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@# Headless OpenGL (EGL + Mesa llvmpipe) for the CPU rasterizer.
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ]; then apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
		else echo "note: install Debian packages $(APT_PACKAGES) for the OpenGL renderer (Embree is used meanwhile)"; fi; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	@# BlazePose GHUM models (Apache-2.0) from the pinned mediapipe wheel and @mediapipe/pose
	@# npm tarball into ~/.cache/hmrkit/blazepose (or $$HMRKIT_BLAZEPOSE_DIR), converted once.
	$(PY) -m hmrkit.blazepose fetch
	touch $(STAMP)

# re-check (and if needed re-fetch) the BlazePose models; fast when they are in place
models: venv
	$(PY) -m hmrkit.blazepose fetch

demo: venv
	$(VENV)/bin/hmrkit demo --out demo_out

# The whole suite, slow tests included (the README's test command and CI; under 15 min on
# 2 cores with anny's cold build); `make test-fast` skips the tests marked slow (edit loop).
test: venv
	$(PY) -m pytest -q -m ''

test-fast: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks

bench: venv
	$(PY) benchmarks/bench_body.py

clean-venv:
	rm -rf $(VENV)
