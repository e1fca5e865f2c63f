# Two commands for a new user: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/platform:$(CURDIR)

.PHONY: run test bench lint venv system-deps clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[dev]'
	touch $@

venv: $(VENV)/.installed

# SIPp (Debian's sip-tester) is the far end in tests and benchmarks; Debian's chromium runs the
# browser tests; espeak-ng speaks campaigns' fallback messages.
system-deps:
	@{ command -v sipp >/dev/null && test -x /usr/bin/chromium && command -v espeak-ng >/dev/null; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester chromium espeak-ng; \
	  else echo "SIPp, chromium or espeak-ng is missing: sudo apt-get install sip-tester chromium espeak-ng"; exit 1; fi; }

run: venv
	$(PY) manage.py run

test: venv system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv system-deps
	$(PY) -m bench $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf var/ bench/work/
