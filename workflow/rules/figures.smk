# The papers' figures and tables, rebuilt from cached results only: each run's metrics.json and its mask's
# statistics JSON (both small and committed). `snakemake figures` builds them all; in a fresh clone (no masks,
# no weights) every input is a cached result (common.smk: cached_result), so no mask or training job runs.
include: "figures_common.smk"


rule experiment_figures:
    input:
        unpack(experiment_results),
    output:
        **{
            name: report(
                f"results/figures/{{experiment}}/{name}.png",
                caption=f"../report/{name}.rst",
                category="{experiment}",
                subcategory=FIGURE_GROUPS[name],
            )
            for name in FIGURE_NAMES
        },
        pdfs=[f"results/figures/{{experiment}}/{name}.pdf" for name in FIGURE_NAMES],
    log:
        "logs/figures/{experiment}.log",
    params:
        listing="logs/figures/{experiment}.metrics.txt",
        profile=(
            f"--profile-compression {PROFILE_COMPRESSION:g}" if PROFILE_COMPRESSION else ""
        ),
    localrule: True
    conda:
        "../envs/paibench.yaml"
    run:
        # Thousands of paths would overflow one shell argument, so the list goes through a file.
        write_lines(params.listing, input.metrics)
        shell(
            "paibench figures --metrics-list {params.listing} --experiment {wildcards.experiment}"
            " --masks-root results/masks {params.profile} --effective-definition {EFFECTIVE_DEFINITION}"
            " --out-dir results/figures/{wildcards.experiment}"
            " > {log} 2>&1"
        )


rule paper_table:
    input:
        paper_metrics,
    output:
        csv=report(
            "results/tables/{paper}.csv",
            caption="../report/table.rst",
            category="tables",
            subcategory="{paper}",
        ),
        md="results/tables/{paper}.md",
        tex="results/tables/{paper}.tex",
        budget="results/tables/{paper}.json",
    log:
        "logs/tables/{paper}.log",
    wildcard_constraints:
        paper="|".join(PAPER_NAMES),
    params:
        listing="logs/tables/{paper}.metrics.txt",
        experiments=lambda wildcards: ",".join(paper_experiments(wildcards.paper)),
    localrule: True
    conda:
        "../envs/paibench.yaml"
    run:
        write_lines(params.listing, input)
        shell(
            "paibench tables --metrics-list {params.listing} --paper {wildcards.paper}={params.experiments}"
            " --effective-definition {EFFECTIVE_DEFINITION} --out-dir results/tables > {log} 2>&1"
        )


rule figures:
    input:
        FIGURES_TARGETS,
        "results/tables/runs.csv",
        "results/tables/summary.csv",
        "results/figures/accuracy_vs_compression.png",
    localrule: True
