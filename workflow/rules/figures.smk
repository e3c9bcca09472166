# The papers' figures and tables, rebuilt from cached results only: each run's metrics.json (through the
# aggregate rule's listing of them) and its mask's statistics JSON (both small and committed). `snakemake figures`
# builds them all; in a fresh clone (no masks, no weights) every input is a cached result (common.smk:
# cached_result), so no mask or training job runs. Any finished run redraws every figure and table (they all read
# the one listing): seconds, against a DAG that names each run's results once.
include: "figures_common.smk"


rule experiment_figures:
    input:
        listing=paths.METRICS_LIST,
        stats=experiment_stats,
    output:
        **{
            name: report(
                paths.FIGURE.format(experiment="{experiment}", name=name, ext="png"),
                caption=f"../report/{name}.rst",
                category="{experiment}",
                subcategory=FIGURE_GROUPS[name],
            )
            for name in FIGURE_NAMES
        },
        pdfs=[paths.FIGURE.format(experiment="{experiment}", name=name, ext="pdf") for name in FIGURE_NAMES],
    log:
        f"{paths.LOGS}/figures/{{experiment}}.log",
    params:
        command="figures",
        args=lambda wildcards: [
            "--experiment", wildcards.experiment, "--masks-root", paths.MASKS_ROOT,
            *(["--profile-compression", f"{PROFILE_COMPRESSION:g}"] if PROFILE_COMPRESSION else []),
            "--effective-definition", EFFECTIVE_DEFINITION,
            "--out-dir", paths.figure_dir(wildcards.experiment),
        ],
    localrule: True
    conda:
        "../envs/paibench.yaml"
    script:
        "../scripts/listed.py"


rule paper_table:
    input:
        listing=paths.METRICS_LIST,
    output:
        csv=report(
            paths.PAPER_TABLE.format(paper="{paper}", ext="csv"),
            caption="../report/table.rst",
            category="tables",
            subcategory="{paper}",
        ),
        md=paths.PAPER_TABLE.format(paper="{paper}", ext="md"),
        tex=paths.PAPER_TABLE.format(paper="{paper}", ext="tex"),
        budget=paths.PAPER_TABLE.format(paper="{paper}", ext="json"),
    log:
        f"{paths.LOGS}/tables/{{paper}}.log",
    wildcard_constraints:
        paper="|".join(PAPER_NAMES),
    params:
        command="tables",
        args=lambda wildcards: [
            "--paper", f"{wildcards.paper}={','.join(paper_experiments(wildcards.paper))}",
            "--effective-definition", EFFECTIVE_DEFINITION, "--out-dir", paths.TABLES_DIR,
        ],
    localrule: True
    conda:
        "../envs/paibench.yaml"
    script:
        "../scripts/listed.py"


rule figures:
    input:
        FIGURES_TARGETS,
        paths.RUNS_CSV,
        paths.SUMMARY_CSV,
        f"{paths.OVERVIEW}.png",
    localrule: True
