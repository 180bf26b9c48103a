# Two commands do all set-up on a fresh machine:
#   make demo   install, then run a complete small sweep on the embedded default
#   make test   install, then run the test suite (CI's command)
# While editing, `make test-fast` runs every test but the end-to-end ones (minutes, not a quarter hour).
VENV ?= .venv
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
	$(PY) -m sweeps run search_spaces/demo.yaml --name demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not e2e"

.PHONY: install demo test test-fast
