rule aggregate:
    input:
        metrics=all_metrics(),
        evals=all_evals(),
    output:
        runs=report(
            paths.RUNS_CSV,
            caption="../report/runs.rst",
            category="tables",
            subcategory="all runs",
        ),
        summary=report(
            paths.SUMMARY_CSV,
            caption="../report/summary.rst",
            category="tables",
            subcategory="all runs",
        ),
        markdown=paths.SUMMARY_MD,
    log:
        f"{paths.LOGS}/aggregate.log",
    params:
        command="aggregate",
        listing=paths.METRICS_LIST,
        args=["--out-dir", paths.TABLES_DIR],
    localrule: True
    conda:
        "../envs/paibench.yaml"
    script:
        "../scripts/listed.py"


rule plot:
    input:
        paths.RUNS_CSV,
    output:
        png=report(
            f"{paths.OVERVIEW}.png",
            caption="../report/accuracy_vs_compression.rst",
            category="overview",
            subcategory="accuracy vs compression",
        ),
        pdf=f"{paths.OVERVIEW}.pdf",
    log:
        f"{paths.LOGS}/plot.log",
    localrule: True
    conda:
        "../envs/paibench.yaml"
    shell:
        "paibench plot --runs {input} --out {output.png} > {log} 2>&1"
