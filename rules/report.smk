FIGURES = ["size_vs_accuracy", "size_per_scheme", "accuracy_change_heatmap"]
DEVICE_FIGURES = ["accuracy_vs_arena", "accuracy_vs_flash"]


rule gather_results:
    input:
        evaluations=every_variant(rules.evaluate_model.output.metrics),
        graphs=every_variant(rules.analyze_graph.output.graph),
        micro_measurements=every_variant(rules.measure_micro.output.micro),
        latencies=every_variant(rules.measure_latency.output.latency),
        training_metrics=every_model(rules.train_model.output.metrics),
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


rule fit_table:
    input:
        csv=rules.gather_results.output.csv,
    output:
        csv=report(
            "reports/fit_table.csv",
            category="Will it fit?",
            caption="../report/fit_table.rst",
        ),
        markdown=report(
            "reports/fit_table.md",
            category="Will it fit?",
            caption="../report/fit_table.rst",
        ),
    log:
        "logs/fit_table.log",
    benchmark:
        "benchmarks/fit_table.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        boards=config["boards"],
    script:
        "../scripts/fit_table.py"


rule plot_device_fit:
    input:
        csv=rules.gather_results.output.csv,
    output:
        figures=report(
            expand(
                "reports/figures/{figure}.{extension}",
                figure=DEVICE_FIGURES,
                extension=config["plots"]["formats"],
            ),
            category="Will it fit?",
            caption="../report/device_figures.rst",
        ),
    log:
        "logs/plot_device_fit.log",
    benchmark:
        "benchmarks/plot_device_fit.tsv"
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        boards=config["boards"],
        dpi=config["plots"]["dpi"],
        formats=config["plots"]["formats"],
    script:
        "../scripts/plot_device_fit.py"


# A benchmark file is a product of its job like an output, so Snakemake orders this
# rule after every job of the grid and reruns it when one of them reruns.
rule stage_costs:
    input:
        benchmarks=grid_benchmarks(),
    output:
        csv=report(
            "reports/stage_costs.csv",
            category="Costs",
            caption="../report/stage_costs.rst",
        ),
        markdown=report(
            "reports/stage_costs.md",
            category="Costs",
            caption="../report/stage_costs.rst",
        ),
        figures=report(
            expand(
                "reports/figures/stage_costs.{extension}",
                extension=config["plots"]["formats"],
            ),
            category="Costs",
            caption="../report/stage_costs.rst",
        ),
    log:
        "logs/stage_costs.log",
    benchmark:
        "benchmarks/stage_costs.tsv"
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
        "../scripts/stage_costs.py"
