# The two commands of the README: `make run` (the study) and `make test`.
# Both first set up .venv with the exact pins of pyproject.toml.

VENV ?= .venv
PYTHON ?= python3
# One Snakemake core per CPU core: each training job is one thread (rules/train.smk).
CORES ?= $(shell nproc)

.PHONY: setup run smoke test test-fast system-packages report rulegraph bench mutation fuzz

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --editable '.[jax,test]'
	touch $@

# Only the virtual environment, for a first look (snakemake -n) or your own study.
setup: $(VENV)/.installed

# The default study, then its tables and figures copied into the tracked reports/.
run: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES) all publish_reports

smoke: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/smoke.yaml

# The compilers the firmware tests build with (Debian packages; root or sudo).
system-packages:
	@tools/system_packages.sh

# Every tier: fast, end to end (smoke study, your-own-data study, caching, faults) and SLURM, on two
# pytest workers: the smoke study's modules on one (tests/conftest.py keeps them together and first), the
# rest on the other; modules are handed out in that order, not largest first. The 30 slowest tests are
# listed at the end: where CI time goes.
test: $(VENV)/.installed system-packages
	$(VENV)/bin/pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=30

# What to run while working: no Snakemake run of the grid, no real training (under 3 minutes).
test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not e2e"

report: $(VENV)/.installed
	$(VENV)/bin/snakemake --report results/default/report.html

# Needs Graphviz's dot (Debian: apt-get install graphviz).
rulegraph: $(VENV)/.installed
	$(VENV)/bin/snakemake --rulegraph | dot -Tsvg > reports/rulegraph.svg

bench: $(VENV)/.installed
	$(VENV)/bin/python -m tools.bench --default-run .

# Mutation testing of the safeguards ([tool.mutmut] in pyproject.toml); `mutmut results` lists survivors.
mutation: $(VENV)/.installed
	$(VENV)/bin/mutmut run

fuzz: $(VENV)/.installed
	HYPOTHESIS_PROFILE=long $(VENV)/bin/pytest -m "not e2e" tests/test_fuzz.py
