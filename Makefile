# fairseq-seqkd: the two commands of the README.
#   make test   set up .venv and run the tests
#   make test-fast   the tests not marked slow (a developer's quick check, about 2 minutes on 2 cores)
#   make demo   set up .venv and run the Bible recipe's demo preset into runs/demo
# Variables a user may override: PYTHON, VENV, TEST_WORKERS (pytest-xdist's processes, default 2),
# TORCH (e.g. TORCH="torch==2.5.1" or a CUDA build),
# TORCH_INDEX (the package index torch alone is installed from, e.g.
# TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU-only wheel; empty: pip's own index,
# where Linux's torch is a CUDA build of several GB).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
FAIRSEQ ?= fairseq-fixed==0.12.3.1
PYTEST_ARGS ?=
# pytest-xdist's processes for the tests (each test process runs one torch thread: tests/conftest.py); 0: none
TEST_WORKERS ?= 2

BIN := $(VENV)/bin
TORCH_FROM := $(if $(strip $(TORCH_INDEX)),--index-url $(TORCH_INDEX))
STAMP := $(VENV)/.seqkd-installed

.PHONY: install test test-fast demo clean-venv

install: $(STAMP)

# fairseq compiles C++ extensions against torch: build it without pip's build
# isolation so that it uses the torch installed here (and pip caches the wheel).
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH_FROM) "$(TORCH)"
	$(BIN)/python -m pip install numpy cython setuptools wheel
	$(BIN)/python -m pip install --no-build-isolation "$(FAIRSEQ)"
	$(BIN)/python -m pip install -e ".[test,bible,fast]"
	touch $@

# --durations=15: the 15 slowest tests in the log, so that a test that grows shows
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15 tests $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15 -m "not slow" tests $(PYTEST_ARGS)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" examples/bible/run.sh --preset demo --workdir runs/demo

clean-venv:
	rm -rf $(VENV)
