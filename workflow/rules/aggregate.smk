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
    run:
        # The file list can be thousands of paths long, so it goes to the CLI through a file.
        Path(params.listing).parent.mkdir(parents=True, exist_ok=True)
        Path(params.listing).write_text("\n".join(input.metrics) + "\n")
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
    shell:
        "paibench plot --runs {input} --out {output.png} > {log} 2>&1"
