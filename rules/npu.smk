# The NPU stage: every integer variant compiled by Arm's Vela for the NPU of each board that has
# one (its accelerator, system configuration and memory mode in the config's boards). Vela's own
# estimate of cycles, time, SRAM and flash, and its per-layer table; a variant Vela cannot compile
# is a verdict, with Vela's reason (tinyml_quant.npu).
#
# Vela gets the variant file: for int8_lut the binned int8 model, not TFLite Micro's compressed
# file, whose TFLM_DECODE operator is a CPU kernel of TFLite Micro; an NPU stores weights in
# Vela's own compressed format, which the binned weights' 16 values a channel feed.
#
# Resources: Vela's peaks are in reports/stage_costs.md, beside these figures.

NPU_BOARDS = [board["name"] for board in config["boards"] if board.get("npu")]
NPU_SCHEMES = LAYER_ERROR_SCHEMES


rule estimate_npu:
    input:
        tflite=VARIANT_FILE,
        record=VARIANT_RECORD,
    output:
        estimate=study_path("npu/{dataset}/{model}/seed{seed}/{scheme}/{board}.json"),
        layers=study_path(
            "npu/{dataset}/{model}/seed{seed}/{scheme}/{board}.layers.csv"
        ),
    log:
        study_path(
            "logs/estimate_npu/{dataset}/{model}/seed{seed}/{scheme}/{board}.log"
        ),
    benchmark:
        study_path(
            "benchmarks/estimate_npu/{dataset}/{model}/seed{seed}/{scheme}/{board}.tsv"
        )
    wildcard_constraints:
        scheme=any_of(NPU_SCHEMES),
        board=any_of(NPU_BOARDS),
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    # Sorted: Snakemake compares params by their repr, and a boards list written in another key
    # order (yaml.safe_dump sorts) must not recompile every variant.
    params:
        npu=lambda wildcards: dict(
            sorted(
                next(
                    board["npu"]
                    for board in config["boards"]
                    if board["name"] == wildcards.board
                ).items()
            )
        ),
    script:
        "../scripts/estimate_npu.py"
