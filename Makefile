# stprof: `make demo` and `make test` set everything up on a new machine.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMPS := .stamps

.PHONY: setup demo test test-fast lint bench clean packages

FAST_LOOP := collectors/_ptrace_fast.so

# compileall: this machine's environment may forbid Python to write its
# bytecode caches (PYTHONDONTWRITEBYTECODE), and compiling stprof's modules
# anew would cost every run tens of milliseconds of start-up.
setup: $(STAMPS)/venv $(FAST_LOOP)
	@sh tools/link-bcc.sh $(VPY)
	@$(VPY) -m compileall -q profiler collectors reports stprof >/dev/null

# The ptrace collector's compiled loop (collectors/ptrace_fast.c); without it
# the collector runs its Python loop.
$(FAST_LOOP): collectors/ptrace_fast.c | packages
	@cc -O2 -Wall -Wextra -shared -fPIC -o $@ $<
	@echo "setup: built $@ (the ptrace collector's compiled loop)"

# Debian packages, kernel headers and debugfs (as root; says what it skips otherwise).
# Always run: it checks in well under a second when all is there.  It waits
# for another apt-get or dpkg at work; apt's output is kept in .stamps/apt.log.
packages:
	@mkdir -p $(STAMPS)
	@sh tools/setup-system.sh $(STAMPS)/apt.log

# The venv needs python3-venv on Debian, so the packages come first.
$(VPY): | packages
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	@echo "setup: made $(VENV) ($$($(VPY) --version))"

# pip's output goes to .stamps/pip.log, shown only when pip fails.
$(STAMPS)/venv: pyproject.toml | packages $(VPY)
	@sh tools/setup-python.sh $(VPY) $(STAMPS)/pip.log
	@touch $@

# -F 4999: the lecture's dd lives a few milliseconds; the default 999 Hz
# would give its fault-path stack table only a handful of samples.
# The text report goes to the terminal; the same profile as a page to demo.html.
demo: setup
	$(VENV)/bin/stprof run -F 4999 --html demo.html -- dd if=/dev/zero of=/dev/null bs=10M count=1
	@echo "stprof: the HTML report is in $(CURDIR)/demo.html (open it in a browser; it works offline)"

test: setup lint
	$(VENV)/bin/pytest -q

# Everything but the slow CI acceptance tests (record/check 20x each way).
test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check profiler collectors reports stprof tests tools bench
	$(VENV)/bin/mypy

bench: setup
	$(VPY) bench/run.py
	$(VPY) bench/stops.py

clean:
	rm -rf $(VENV) $(STAMPS) $(FAST_LOOP) tests/.build .pytest_cache .mypy_cache .ruff_cache .hypothesis
