# TinyML quantization study: download -> train -> five TFLite variants ->
# LiteRT evaluation, TFLite Micro and latency measurements -> tables and figures.
# See README.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/convert.smk"
include: "rules/evaluate.smk"
include: "rules/measure.smk"
include: "rules/report.smk"


rule all:
    input:
        rules.gather_results.output,
        rules.plot_results.output,
        rules.fit_table.output,
        rules.plot_device_fit.output,
        rules.stage_costs.output,
