# stprof: `make demo` and `make test` set everything up on a new machine.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMPS := .stamps

.PHONY: setup demo test lint bench clean system

setup: $(STAMPS)/venv system

# Debian packages, kernel headers and debugfs (as root; a no-op otherwise).
system:
	@sh tools/setup-system.sh
	@sh tools/link-bcc.sh $(VPY)

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMPS)/venv: pyproject.toml | $(VPY)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@mkdir -p $(STAMPS) && touch $@

demo: setup
	$(VENV)/bin/stprof run -- dd if=/dev/zero of=/dev/null bs=10M count=1

test: setup lint
	$(VENV)/bin/pytest -q

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check profiler collectors reports tests tools bench
	$(VENV)/bin/mypy

bench: setup
	$(VPY) bench/run.py

clean:
	rm -rf $(VENV) $(STAMPS) tests/.build .pytest_cache .mypy_cache .ruff_cache
