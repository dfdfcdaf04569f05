"""Snakemake entry point of rule fetch_dataset."""

from tinyml_quant.datasets import fetch
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    fetch(
        snakemake.wildcards.dataset,
        destination_folder=snakemake.output.manifest.rsplit("/", 1)[0],
        mirror=snakemake.params.mirror,
    )
