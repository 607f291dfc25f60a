# make demo   run the sidecar on a bundled example, as virt-launcher would
# make test   run every test, real libvirt and QEMU included
# make bench  measure latency, memory and start-up (docs/benchmarks.md)
#
# Each target installs what it needs: Debian packages when missing (this
# needs root), and a virtual environment in .venv for Python.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := pyproject.toml setup.py $(shell find pinning_hook proto -type f \( -name '*.py' -o -name '*.proto' \) -not -name '*_pb2*.py')

.PHONY: demo test bench system-deps clean

# The venv's own interpreter; Debian ships the venv module separately.
$(BIN)/python:
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || bash tools/install-system-deps.sh python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# A plain (non-editable) install, because the build generates the gRPC
# stubs from proto/ into the installed package.
$(VENV)/.installed: $(BIN)/python $(SOURCES)
	$(BIN)/pip install --quiet .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet '.[test]'
	@touch $@

system-deps:
	bash tools/install-system-deps.sh

demo: $(VENV)/.installed
	$(BIN)/python tools/demo.py

# The system packages come first: libvirt-python builds against libvirt-dev.
test: system-deps
	$(MAKE) $(VENV)/.installed-test
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/bench.py --output docs/benchmarks.md

clean:
	rm -rf $(VENV) build *.egg-info
