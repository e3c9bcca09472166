# Helpers of figures.smk: which cached results feed each experiment's figures and each paper's table.
FIGURE_NAMES = [
    "accuracy_nominal",
    "accuracy_effective",
    "effective_vs_nominal",
    "layer_density",
    "collapse",
    "accuracy_vs_sparsity",
]
# Report subcategory of each figure (the report groups figures by experiment, then by this).
FIGURE_GROUPS = {
    "accuracy_nominal": "accuracy vs compression",
    "accuracy_effective": "accuracy vs compression",
    "effective_vs_nominal": "effective compression",
    "layer_density": "per-layer density",
    "collapse": "layer collapse",
    "accuracy_vs_sparsity": "accuracy vs sparsity (FORCE)",
}
PAPER_NAMES = ["mica", "force", "rreg"]
EXPERIMENTS = sorted({run.experiment for run in RUNS})
PROFILE_COMPRESSION = config.get("figures", {}).get("profile_compression")
# Which effective compression figures and tables show: paths (paibench's) or mica (the MiCA reference's rule).
EFFECTIVE_DEFINITION = config.get("figures", {}).get("effective_definition", "paths")


def experiment_results(wildcards):
    runs = [run for run in RUNS if run.experiment == wildcards.experiment]
    stats = [str(Path(run.mask).with_suffix(".json")) for run in runs if run.method != "dense"]
    return {
        "metrics": [cached_result(run, f"{run.run_dir}/metrics.json") for run in runs],
        "stats": [cached_result(run, path) for run, path in zip([r for r in runs if r.method != "dense"], stats)],
    }


def paper_experiments(paper):
    return [name for name in EXPERIMENTS if paper in GRID.papers[name]]


def paper_metrics(wildcards):
    wanted = set(paper_experiments(wildcards.paper))
    return [cached_result(run, f"{run.run_dir}/metrics.json") for run in RUNS if run.experiment in wanted]


def figure_files(experiment, ext="png"):
    return [f"results/figures/{experiment}/{name}.{ext}" for name in FIGURE_NAMES]


FIGURES_TARGETS = [
    f for exp in EXPERIMENTS for ext in ("png", "pdf") for f in figure_files(exp, ext)
] + [f"results/tables/{paper}.{ext}" for paper in PAPER_NAMES for ext in ("csv", "md", "tex")]
