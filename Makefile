# Two commands do all set-up on a fresh machine:
#   make demo   install, then run a complete small sweep on the embedded default
#   make test   install, then run the test suite (CI's command)
# While editing, `make test-fast` runs every test but the end-to-end ones (minutes, not a quarter hour).
VENV ?= .venv
DEMO_NAME ?= demo
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU-only machine: take the CPU build of torch first, so the range in
	# pyproject is already satisfied and no multi-GB CUDA build is pulled.
	command -v nvidia-smi >/dev/null 2>&1 || $(PY) -m pip install -q torch==2.13.0
	# The versions the tests passed with (constraints.txt, as every cluster node installs):
	# a fresh machine installs what CI ran, not whatever the registry released since.
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m sweeps run search_spaces/demo.yaml --name $(DEMO_NAME)

# The model tests that run again on torch's path, as a node without a C compiler runs them
# (models/kernels/), so that the fallback cannot rot.
TORCH_PATH_TESTS = tests/test_train.py tests/test_train_cli.py tests/test_metrics.py tests/test_methods.py \
	tests/test_generate.py tests/test_pooling.py tests/test_kl.py

# The PostgreSQL tests (tests/postgres.py) run Debian's server binaries: installed here when absent
# (as root, or through sudo); should that fail, those tests fail saying what is missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || command -v initdb > /dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } || \
	  echo "make: Debian's postgresql package could not be installed; the PostgreSQL tests will fail"

test: $(VENV)/.installed postgres-server
	$(PY) -m pytest -q
	MODELS_NATIVE=off $(PY) -m pytest -q $(TORCH_PATH_TESTS)

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not e2e"

.PHONY: install demo test test-fast postgres-server
