"""Snakemake entry point of rule fetch_dataset."""

from tinyml_quant.fetch import fetch_builtin, fetch_image_folder
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    source = dict(snakemake.params.source)
    if "mirror" in source:
        fetch_builtin(
            snakemake.wildcards.dataset,
            snakemake.output.manifest,
            mirror=source["mirror"],
            download_folder=snakemake.params.download_folder,
        )
    else:
        fetch_image_folder(
            snakemake.wildcards.dataset,
            source["source"],
            snakemake.output.manifest,
            sha256=source["sha256"],
            download_folder=snakemake.params.download_folder,
        )
