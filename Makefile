# Two entry points: `make test` and `make demo`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: test demo bench clean

$(STAMP): pyproject.toml requirements-ci.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: pip takes these from the machine's local files (uv/poetry would download GBs)
	$(PIP) install -qq -c requirements-ci.txt torch torchvision
	$(PIP) install -qq -c requirements-ci.txt -e '.[test,demo,atlas]'
	# zennit-crp pins an old zennit in its metadata but works with zennit 0.5 (see NOTES)
	$(PIP) install -qq --no-deps -c requirements-ci.txt zennit-crp
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# JupyterLab refuses to start as root unless told; containers and CI machines often are root.
ROOT_FLAG := $(shell [ "$$(id -u)" = "0" ] && echo --allow-root)

demo: $(STAMP)
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/01_quickstart.ipynb

bench: $(STAMP)
	$(PY) benchmarks/engine.py

clean:
	rm -rf $(VENV)
