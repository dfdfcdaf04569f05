#!/usr/bin/env bash
# Snakemake runs this inside the new conda environment, from the workflow's
# working directory: install the study's own package without touching the pins.
set -euo pipefail
pip install --no-deps --editable "${PWD}"
