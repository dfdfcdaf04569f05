"""Snakemake entry point of rule fit_table."""

from tinyml_quant.devices import run_fit_table
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    run_fit_table(
        snakemake.input.csv,
        list(snakemake.input.npu_estimates),
        [dict(board) for board in snakemake.params.boards],
        dict(snakemake.params.cortex_m_latency),
        csv_path=snakemake.output.csv,
        markdown_path=snakemake.output.markdown,
    )
