# The two commands of the README: `make run` (the study) and `make test`.
# Both first set up .venv with the exact pins of pyproject.toml.

VENV ?= .venv
PYTHON ?= python3
CORES ?= 4

# Offline machines: read the datasets from the mirror beside the checkout when
# there is one and the user named none (see README "Offline mirror").
ifeq ($(origin TINYML_DATASET_MIRROR), undefined)
ifneq ($(wildcard ../shared/datasets/mnist),)
export TINYML_DATASET_MIRROR := $(abspath ../shared/datasets)
endif
endif

.PHONY: run smoke test report rulegraph

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --editable '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES)

smoke: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/smoke.yaml

test: $(VENV)/.installed
	$(VENV)/bin/pytest

report: $(VENV)/.installed
	$(VENV)/bin/snakemake --report reports/report.html

# Needs Graphviz's dot (Debian: apt-get install graphviz).
rulegraph: $(VENV)/.installed
	$(VENV)/bin/snakemake --rulegraph | dot -Tsvg > reports/rulegraph.svg
