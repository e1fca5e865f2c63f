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
# browser tests; espeak-ng speaks campaigns' fallback messages; the cluster tests (-m cluster) run
# Debian's postgresql and redis-server as the nodes' shared servers and kamailio in front of them.
system-deps:
	@{ command -v sipp >/dev/null && test -x /usr/bin/chromium && command -v espeak-ng >/dev/null \
	   && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && command -v redis-server >/dev/null \
	   && command -v kamailio >/dev/null; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester chromium espeak-ng postgresql redis-server kamailio; \
	  else echo "SIPp, chromium, espeak-ng, postgresql, redis-server or kamailio is missing: sudo apt-get install sip-tester chromium espeak-ng postgresql redis-server kamailio"; exit 1; fi; }

run: venv
	$(PY) manage.py run

# The cluster, chaos, gateway and browser suites mostly wait (for processes to die and heal, for calls to ring, for pages)
# and run, one after the other, each in a pytest of its own, beside the rest; each pytest starts its own
# servers. `make test PYTEST_ARGS=...` runs one pytest with those arguments.
test: venv system-deps
ifeq ($(strip $(PYTEST_ARGS)),)
	@mkdir -p var; \
	{ $(PY) -m pytest -m cluster; c=$$?; $(PY) -m pytest -m chaos; h=$$?; \
	  $(PY) -m pytest -m "not chaos and not cluster" tests/gateway; g=$$?; \
	  $(PY) -m pytest -m "not chaos and not cluster" tests/browser; b=$$?; \
	  test $$c -eq 0 -a $$h -eq 0 -a $$g -eq 0 -a $$b -eq 0; } \
	  >var/test-waiting-suites.log 2>&1 & slow=$$!; \
	$(PY) -m pytest -m "not chaos and not cluster" --ignore=tests/gateway --ignore=tests/browser; rest=$$?; \
	wait $$slow; slowrc=$$?; \
	echo "==== cluster, chaos, gateway and browser suites (var/test-waiting-suites.log) ===="; cat var/test-waiting-suites.log; \
	test $$rest -eq 0 -a $$slowrc -eq 0
else
	$(PY) -m pytest $(PYTEST_ARGS)
endif

bench: venv system-deps
	$(PY) -m bench $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf var/ bench/work/
