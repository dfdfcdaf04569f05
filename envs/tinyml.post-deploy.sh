#!/usr/bin/env bash
# Snakemake runs this inside the new conda environment, from the folder it was started in, which
# need not be this workflow's (another workflow may use this one as a module): rules/common.smk
# names this workflow's folder in TINYML_QUANT_WORKFLOW. Installs the study's own package without
# touching the environment's pins.
set -euo pipefail
pip install --no-deps --editable "${TINYML_QUANT_WORKFLOW:?set by rules/common.smk while Snakemake parses the workflow}"
