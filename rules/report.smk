FIGURES = ["size_vs_accuracy", "size_per_scheme", "accuracy_change_heatmap"]


rule gather_results:
    input:
        evaluations=evaluation_outputs(),
        training_metrics=training_metric_outputs(),
    output:
        csv=report(
            "reports/results.csv",
            category="Tables",
            caption="../report/results_csv.rst",
        ),
        markdown=report(
            "reports/results.md",
            category="Tables",
            caption="../report/results_md.rst",
        ),
    log:
        "logs/gather_results.log",
    benchmark:
        "benchmarks/gather_results.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/gather_results.py"


rule plot_results:
    input:
        csv=rules.gather_results.output.csv,
    output:
        figures=report(
            expand(
                "reports/figures/{figure}.{extension}",
                figure=FIGURES,
                extension=config["plots"]["formats"],
            ),
            category="Figures",
            caption="../report/figures.rst",
        ),
    log:
        "logs/plot_results.log",
    benchmark:
        "benchmarks/plot_results.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=config["plots"]["dpi"],
        formats=config["plots"]["formats"],
    script:
        "../scripts/plot_results.py"
