"""Snakemake entry point of rule publish_reports: the study's reports copied, file by file."""

from tinyml_quant.files import copy_files, output_to_log

with output_to_log(snakemake.log[0]):
    copy_files(list(snakemake.input), list(snakemake.output))
