rule aggregate:
    input:
        metrics=all_metrics(),
        evals=all_evals(),
    output:
        runs="results/tables/runs.csv",
        summary="results/tables/summary.csv",
        markdown="results/tables/summary.md",
    log:
        "logs/aggregate.log",
    params:
        listing="results/tables/.metrics-list.txt",
    localrule: True
    conda:
        "../../envs/environment.yaml"
    run:
        # Thousands of paths would overflow one shell argument, so the list goes through a file.
        write_lines(params.listing, input.metrics)
        shell("paibench aggregate --metrics-list {params.listing} --out-dir results/tables > {log} 2>&1")


rule plot:
    input:
        "results/tables/runs.csv",
    output:
        png="results/figures/accuracy_vs_compression.png",
        pdf="results/figures/accuracy_vs_compression.pdf",
    log:
        "logs/plot.log",
    localrule: True
    conda:
        "../../envs/environment.yaml"
    shell:
        "paibench plot --runs {input} --out {output.png} > {log} 2>&1"
