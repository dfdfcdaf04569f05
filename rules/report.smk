# Report: the results tables, every figure, the device-fit table and where the time
# went, under results/<study>/reports/, tagged for `snakemake --report`; and
# publish_reports, which copies them into a tracked folder when asked for by name (make
# run does): reports/ for the default study; any other study names its own
# (published_reports), or publish_reports is refused.


rule gather_results:
    input:
        evaluations=every_variant(rules.evaluate_model.output.metrics),
        predictions=every_variant(rules.evaluate_model.output.predictions),
        datasets=expand(
            rules.prepare_dataset.output.prepared, dataset=config["datasets"]
        ),
        graphs=every_variant(rules.analyze_graph.output.graph),
        micro_measurements=every_variant(rules.measure_micro.output.micro),
        latencies=every_variant(rules.measure_latency.output.latency),
        training_metrics=every_model(rules.train_model.output.metrics),
        published_int8=every_published_int8(
            rules.evaluate_published_int8.output.metrics
        ),
        layer_errors=every_variant(rules.layer_error.output.csv, LAYER_ERROR_SCHEMES),
        recoveries=every_recovery,
        # Named by the records: the recovery ladder tests each mixed variant's change on the same images.
        recovery_predictions=every_recovery_prediction,
        # The fine-tuning records, with their seconds: the cost of the ladder's QAT rung.
        qat_records=every_variant(rules.finetune_qat.output.record, QAT_IN_STUDY),
        calibrations=expand(
            every_model(rules.evaluate_calibration.output.metrics),
            images=CALIBRATION_SIZES,
        ),
        calibration_predictions=expand(
            every_model(rules.evaluate_calibration.output.predictions),
            images=CALIBRATION_SIZES,
        ),
        npu_estimates=expand(
            every_variant(rules.estimate_npu.output.estimate, NPU_SCHEMES),
            board=NPU_BOARDS,
        ),
    output:
        csv=report(
            study_path("reports/results.csv"),
            category="Tables",
            caption="../report/results_csv.rst",
        ),
        # results.md without its first section, the per-board answer (rule board_choice), which a
        # board's memory changes while these tables stay.
        markdown=study_path("gather/results_tables.md"),
        calibration_csv=report(
            study_path("reports/calibration.csv"),
            category="Tables",
            caption="../report/calibration_csv.rst",
        ),
        npu_csv=report(
            study_path("reports/npu.csv"),
            category="Will it fit?",
            caption="../report/npu_csv.rst",
        ),
        int4_ranges_csv=report(
            study_path("reports/int4_ranges.csv"),
            category="Tables",
            caption="../report/int4_ranges_csv.rst",
        ),
        ladder_csv=report(
            study_path("reports/recovery_ladder.csv"),
            category="Tables",
            caption="../report/recovery_ladder.rst",
        ),
    log:
        study_path("logs/gather_results.log"),
    benchmark:
        study_path("benchmarks/gather_results.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # Only the labels: a board's memory or allowance changes the fit table, not these tables.
        board_labels={
            board["name"]: board.get("label", board["name"])
            for board in config["boards"]
        },
        cortex_m_latency=config["cortex_m_latency"],
        mlperf_reference=config["mlperf_reference"],
        recovery_threshold_points=config["diagnostics"]["recovery_threshold_points"],
        calibration_images=config["conversion"][FULL_INTEGER]["calibration_images"],
        # The baseline of int4_ranges.csv: int4 as the study makes it.
        int4_weight_algorithm=config["conversion"][INT4]["weight_algorithm"],
    script:
        "../scripts/gather_results.py"


rule plot_results:
    input:
        csv=rules.gather_results.output.csv,
    output:
        **figure_outputs(RESULT_FIGURES, "Figures", "../report/figures.rst"),
    log:
        study_path("logs/plot_results.log"),
    benchmark:
        study_path("benchmarks/plot_results.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=config["plots"]["dpi"],
    script:
        "../scripts/plot_results.py"


rule fit_table:
    input:
        csv=rules.gather_results.output.csv,
        npu_estimates=rules.gather_results.input.npu_estimates,
    output:
        csv=report(
            study_path("reports/fit_table.csv"),
            category="Will it fit?",
            caption="../report/fit_table.rst",
        ),
        markdown=report(
            study_path("reports/fit_table.md"),
            category="Will it fit?",
            caption="../report/fit_table.rst",
        ),
    log:
        study_path("logs/fit_table.log"),
    benchmark:
        study_path("benchmarks/fit_table.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        boards=config["boards"],
        cortex_m_latency=config["cortex_m_latency"],
    script:
        "../scripts/fit_table.py"


rule board_choice:
    input:
        csv=rules.gather_results.output.csv,
        body=rules.gather_results.output.markdown,
        npu_estimates=rules.gather_results.input.npu_estimates,
        evaluations=rules.gather_results.input.evaluations,
        predictions=rules.gather_results.input.predictions,
        # The mixed-precision variants, candidates like the grid's (ladder.mixed_variants).
        recoveries=every_recovery,
        recovery_predictions=every_recovery_prediction,
        datasets=rules.gather_results.input.datasets,
    output:
        csv=report(
            study_path("reports/board_choice.csv"),
            category="Will it fit?",
            caption="../report/board_choice.rst",
        ),
        markdown=report(
            study_path("reports/results.md"),
            category="Tables",
            caption="../report/results_md.rst",
        ),
    log:
        study_path("logs/board_choice.log"),
    benchmark:
        study_path("benchmarks/board_choice.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        boards=config["boards"],
        cortex_m_latency=config["cortex_m_latency"],
    script:
        "../scripts/board_choice.py"


rule plot_recovery_ladder:
    input:
        csv=rules.gather_results.output.ladder_csv,
    output:
        **figure_outputs(LADDER_FIGURES, "Diagnostics", "../report/recovery_ladder.rst"),
    log:
        study_path("logs/plot_recovery_ladder.log"),
    benchmark:
        study_path("benchmarks/plot_recovery_ladder.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=config["plots"]["dpi"],
    script:
        "../scripts/plot_recovery_ladder.py"


rule plot_device_fit:
    input:
        csv=rules.gather_results.output.csv,
        # Which variant fits which board, as the fit table counts it: the tradeoff figures draw it.
        fit_csv=rules.fit_table.output.csv,
        calibration_csv=rules.gather_results.output.calibration_csv,
        npu_csv=rules.gather_results.output.npu_csv,
    output:
        **figure_outputs(
            [*DEVICE_FIGURES, *tradeoff_figure_names(config["datasets"])],
            "Will it fit?",
            "../report/device_figures.rst",
        ),
    log:
        study_path("logs/plot_device_fit.log"),
    benchmark:
        study_path("benchmarks/plot_device_fit.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        boards=config["boards"],
        dpi=config["plots"]["dpi"],
    script:
        "../scripts/plot_device_fit.py"


rule plot_learning_curves:
    input:
        histories=every_model(rules.train_model.output.history, trained_here=True),
    output:
        **figure_outputs(TRAINING_FIGURES, "Training", "../report/learning_curves.rst"),
    log:
        study_path("logs/plot_learning_curves.log"),
    benchmark:
        study_path("benchmarks/plot_learning_curves.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=config["plots"]["dpi"],
        names=[f"{dataset}/{model}/{seed}" for dataset, model, seed in TRAINED_HERE],
    script:
        "../scripts/plot_learning_curves.py"


rule plot_layer_errors:
    input:
        layer_errors=every_variant(rules.layer_error.output.csv, LAYER_ERROR_SCHEMES),
    output:
        **figure_outputs(DIAGNOSTIC_FIGURES, "Diagnostics", "../report/layer_error.rst"),
    log:
        study_path("logs/plot_layer_errors.log"),
    benchmark:
        study_path("benchmarks/plot_layer_errors.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=config["plots"]["dpi"],
    script:
        "../scripts/plot_layer_errors.py"


rule stage_costs:
    input:
        benchmarks=grid_benchmarks,
    output:
        **figure_outputs(COST_FIGURES, "Costs", "../report/stage_costs.rst"),
        csv=report(
            study_path("reports/stage_costs.csv"),
            category="Costs",
            caption="../report/stage_costs.rst",
        ),
        markdown=report(
            study_path("reports/stage_costs.md"),
            category="Costs",
            caption="../report/stage_costs.rst",
        ),
    log:
        study_path("logs/stage_costs.log"),
    benchmark:
        study_path("benchmarks/stage_costs.tsv")
    conda:
        "../envs/tinyml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=config["plots"]["dpi"],
        # Called once the DAG is built, when every rule file has been read.
        budgets=lambda wildcards: rule_budgets(),
    script:
        "../scripts/stage_costs.py"


REPORT_RULES = [
    rules.gather_results,
    rules.plot_results,
    rules.fit_table,
    rules.board_choice,
    rules.plot_device_fit,
    # Learning curves exist only for models trained here: a study of imported models has none.
    *([rules.plot_learning_curves] if TRAINED_HERE else []),
    rules.plot_layer_errors,
    rules.plot_recovery_ladder,
    rules.stage_costs,
]
# What the reports folder holds (gather_results also writes the tables board_choice completes, elsewhere).
STUDY_REPORTS = [
    path
    for rule in REPORT_RULES
    for path in rule.output
    if Path(path).is_relative_to(study_path("reports"))
]
PUBLISHED_REPORTS = study.published_folder(config)

if PUBLISHED_REPORTS:

    rule publish_reports:
        input:
            STUDY_REPORTS,
        output:
            [
                str(
                    Path(PUBLISHED_REPORTS)
                    / Path(path).relative_to(study_path("reports"))
                )
                for path in STUDY_REPORTS
            ],
        log:
            study_path("logs/publish_reports.log"),
        localrule: True
        conda:
            "../envs/tinyml.yaml"
        script:
            "../scripts/publish_reports.py"

else:

    # Asked for by name only: the refusal names the key before any job runs.
    rule publish_reports:
        input:
            lambda wildcards: study.refuse_publishing(config),
        localrule: True
