# Two commands matter: `make demo` (the main job: the XML-RPC experiment) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BENCH_VENV ?= .venv-bench
BPY := $(BENCH_VENV)/bin/python

.PHONY: demo echo-demo test lint typecheck unit bench stdlib-tests clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(BENCH_VENV)/.installed
	$(BPY) -m greenwire.bench xmlrpc

echo-demo: $(VENV)/.installed
	$(PY) -m greenwire.demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests $(wildcard bench examples stdlib_tests)
	$(VENV)/bin/ruff format --check src tests $(wildcard bench examples stdlib_tests)

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

unit: $(VENV)/.installed
	$(PY) -m pytest --cov=greenwire --cov-report=term:skip-covered -q

test: lint typecheck unit

$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BPY) -m pip install -q --upgrade pip
	$(BPY) -m pip install -q -e '.[bench]'
	touch $@

bench: $(BENCH_VENV)/.installed
	@command -v wrk >/dev/null || echo "wrk is not installed (apt-get install wrk): the HTTP tables will fail"
	$(BPY) bench/run_all.py

STDLIB_IMPL ?= greenwire
# CPython's own test modules under patch_all() (docs/compat.md).
# Against gevent too: make stdlib-tests STDLIB_IMPL=greenwire,gevent (needs the bench extras).
stdlib-tests: $(VENV)/.installed
	$(PY) stdlib_tests/run.py --impl $(STDLIB_IMPL) --jobs 2 --problems

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
