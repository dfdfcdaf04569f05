# Device-side measurements of every TFLite variant: its graph (operators,
# parameters, MACs), TensorFlow Lite Micro (arena, operator support) and
# host-CPU latency. Each is its own cached job per variant.
#
# Resources cover the peaks measured on the largest default-preset variants (cifar10
# resnet_v1 and mobilenet_v2, /usr/bin/time -v; the benchmark files of these
# sub-second jobs miss the peak) with margin: analyze_graph 35 MB and 0.3 s,
# measure_micro 240 MB and 1.3 s, measure_latency 235 MB and 0.6 s.


rule analyze_graph:
    input:
        tflite=rules.convert_model.output.tflite,
    output:
        graph="results/graph/{dataset}/{model}/{scheme}.json",
    log:
        "logs/analyze_graph/{dataset}/{model}/{scheme}.log",
    benchmark:
        "benchmarks/analyze_graph/{dataset}/{model}/{scheme}.tsv"
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
        tflite=rules.convert_model.output.tflite,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        micro="results/micro/{dataset}/{model}/{scheme}.json",
    log:
        "logs/measure_micro/{dataset}/{model}/{scheme}.log",
    benchmark:
        "benchmarks/measure_micro/{dataset}/{model}/{scheme}.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/measure_micro.py"


rule measure_latency:
    input:
        tflite=rules.convert_model.output.tflite,
        dataset=rules.prepare_dataset.output.prepared,
    output:
        latency="results/latency/{dataset}/{model}/{scheme}.json",
    log:
        "logs/measure_latency/{dataset}/{model}/{scheme}.log",
    benchmark:
        "benchmarks/measure_latency/{dataset}/{model}/{scheme}.tsv"
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
