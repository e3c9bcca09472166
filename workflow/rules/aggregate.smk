rule aggregate:
    input:
        metrics=all_metrics(),
        evals=all_evals(),
    output:
        runs=report(
            "results/tables/runs.csv",
            caption="../report/runs.rst",
            category="tables",
            subcategory="all runs",
        ),
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="tables",
            subcategory="all runs",
        ),
        markdown="results/tables/summary.md",
    log:
        "logs/aggregate.log",
    params:
        listing="results/tables/.metrics-list.txt",
    localrule: True
    conda:
        "../envs/paibench.yaml"
    run:
        # Thousands of paths would overflow one shell argument, so the list goes through a file.
        write_lines(params.listing, input.metrics)
        shell("paibench aggregate --metrics-list {params.listing} --out-dir results/tables > {log} 2>&1")


rule plot:
    input:
        "results/tables/runs.csv",
    output:
        png=report(
            "results/figures/accuracy_vs_compression.png",
            caption="../report/accuracy_vs_compression.rst",
            category="overview",
            subcategory="accuracy vs compression",
        ),
        pdf="results/figures/accuracy_vs_compression.pdf",
    log:
        "logs/plot.log",
    localrule: True
    conda:
        "../envs/paibench.yaml"
    shell:
        "paibench plot --runs {input} --out {output.png} > {log} 2>&1"
