"""Snakemake entry point of rule board_choice."""

from tinyml_quant.board_choice import run_board_choice
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    run_board_choice(
        inputs=dict(snakemake.input.items()),
        parameters={
            "boards": [dict(board) for board in snakemake.params.boards],
            "cortex_m_latency": dict(snakemake.params.cortex_m_latency),
        },
        outputs=dict(snakemake.output.items()),
    )
