# TinyML quantization study: data -> training (or your own models) -> a TFLite variant
# per quantization scheme -> LiteRT evaluation, TFLite Micro and host measurements,
# per-layer diagnostics, Ethos-U NPU estimates and firmware bundles -> tables and
# figures. See README.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/convert.smk"
include: "rules/evaluate.smk"
include: "rules/qat.smk"
include: "rules/measure.smk"
include: "rules/diagnose.smk"
include: "rules/npu.smk"
include: "rules/firmware.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        STUDY_REPORTS,
        every_firmware_bundle,
