"""Snakemake entry point of rule fetch_published_model."""

from tinyml_quant.fetch import fetch_published_model
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    fetch_published_model(
        snakemake.wildcards.published,
        snakemake.output.manifest,
        mirror=snakemake.params.mirror,
        download_folder=snakemake.params.download_folder,
    )
