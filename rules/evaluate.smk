# Evaluation: every variant with the LiteRT interpreter on the whole (prepared) test set.
#
# Resources cover the peaks measured on the full default run (10,000 test images)
# with margin: 283 MB and 141 s at most (int16x8 runs LiteRT's slow reference kernels).


rule evaluate_model:
    input:
        tflite=rules.convert_model.output.tflite,
        dataset=rules.prepare_dataset.output.prepared,
        # Every variant is compared with its model's reference (fp32) variant; that one needs nothing.
        reference_predictions=lambda wildcards: (
            []
            if wildcards.scheme == REFERENCE_SCHEME
            else expand(
                rules.evaluate_model.output.predictions,
                **{**wildcards, "scheme": REFERENCE_SCHEME},
            )
        ),
    output:
        metrics=study_path("evaluate/{dataset}/{model}/{scheme}.json"),
        predictions=study_path("evaluate/{dataset}/{model}/{scheme}.predictions.npy"),
    log:
        study_path("logs/evaluate_model/{dataset}/{model}/{scheme}.log"),
    benchmark:
        study_path("benchmarks/evaluate_model/{dataset}/{model}/{scheme}.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 2
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        batch_size=config["evaluation"]["batch_size"],
    script:
        "../scripts/evaluate_model.py"
