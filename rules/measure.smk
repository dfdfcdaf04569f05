# Device-side measurements of every TFLite variant: its graph (operators, parameters,
# MACs), TensorFlow Lite Micro (arena, operator support, agreement with LiteRT on a
# seeded test sample) and host-CPU latency. Each is its own cached job per variant.
# The graph and TFLite Micro see what a device stores (device_file: the compressed file
# of the LUT scheme); LiteRT, which cannot decode it, runs the variant file.
#
# Resources cover the default run's peaks with margin: reports/stage_costs.md sets
# them side by side, and the end-to-end tests check every job against them.


rule analyze_graph:
    input:
        tflite=device_file,
        record=device_record,
    output:
        graph=study_path("graph/{dataset}/{model}/seed{seed}/{scheme}.json"),
    log:
        study_path("logs/analyze_graph/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/analyze_graph/{dataset}/{model}/seed{seed}/{scheme}.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/analyze_graph.py"


rule measure_micro:
    input:
        tflite=device_file,
        record=device_record,
        # What LiteRT runs to compare with: the variant file (for the LUT scheme, the binned model).
        reference=VARIANT_FILE,
        reference_record=VARIANT_RECORD,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        micro=study_path("micro/{dataset}/{model}/seed{seed}/{scheme}.json"),
    log:
        study_path("logs/measure_micro/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/measure_micro/{dataset}/{model}/seed{seed}/{scheme}.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    params:
        agreement_images=config["micro"]["agreement_images"],
        sample_seed=config["micro"]["sample_seed"],
        gate={key: config["micro"][key] for key in MICRO_GATE_KEYS},
    script:
        "../scripts/measure_micro.py"


rule measure_latency:
    input:
        tflite=VARIANT_FILE,
        record=VARIANT_RECORD,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        latency=study_path("latency/{dataset}/{model}/seed{seed}/{scheme}.json"),
    log:
        study_path("logs/measure_latency/{dataset}/{model}/seed{seed}/{scheme}.log"),
    benchmark:
        study_path(
            "benchmarks/measure_latency/{dataset}/{model}/seed{seed}/{scheme}.tsv"
        )
    conda:
        "../envs/tinyml.yaml"
    # One thread by design: latency of one image, as a device would run it.
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        invokes=config["latency"]["invokes"],
        warmup=config["latency"]["warmup"],
    script:
        "../scripts/measure_latency.py"
