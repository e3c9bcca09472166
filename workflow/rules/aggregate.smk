rule aggregate:
    input:
        # Each run's results are an input of this rule only: tables and figures read its listing. That keeps the
        # DAG small (each input reference costs Snakemake a producer lookup: `snakemake -n` of a 10,000-run grid).
        # eval.json is not listed: the job that writes metrics.json writes it too, and a job missing an output
        # reruns; a cached result counts only with both (paths.RESULT_FILES).
        metrics=all_metrics(),
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
        listing=paths.METRICS_LIST,  # every run's metrics.json, one per line: what tables and figures read
    log:
        f"{paths.LOGS}/aggregate.log",
    params:
        command="aggregate",
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
