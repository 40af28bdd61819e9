# Set-up and everyday commands. `make demo` and `make test` each create .venv when missing.
# Torch: on a machine without an NVIDIA GPU the CPU build of torch 2.13.0 is installed first (this
# machine keeps its wheel on disk); with a GPU, pip's ordinary torch wheel comes with the package.
# The pin goes into the package's install too: timm needs torchvision, and pip would otherwise take
# the newest one and the (CUDA) torch it requires; pinned, it takes torchvision 0.28.0, made for
# torch 2.13.0 (a CUDA build whose compiled ops do not load beside the CPU torch: see mtnas/nn/_timm.py).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_PIN := $(if $(HAS_GPU),,torch==2.13.0)
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test wheel-check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(if $(TORCH_PIN),$(PIP) install -q $(TORCH_PIN))
	$(PIP) install -q -e '.[test]' $(TORCH_PIN)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mtnas demo

lint: $(STAMP)
	$(VENV)/bin/ruff check mtnas tests benchmarks examples
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q -n 2 --durations=10

# The wheel, installed in a fresh venv outside the checkout, lists every built-in space and trains.
wheel-check: $(STAMP)
	PY=$(PY) bash .ci/wheel_check

bench: $(STAMP)
	$(PY) benchmarks/planted_truth.py
	$(PY) benchmarks/supernet_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
