# Helpers of figures.smk: which cached results feed each experiment's figures and each paper's table.
from paibench.names import DENSE, FIGURES, PAPERS, TABLE_FORMATS

FIGURE_NAMES = list(FIGURES)
FIGURE_GROUPS = {name: group for name, (_, group) in FIGURES.items()}  # report subcategory of each figure
PAPER_NAMES = list(PAPERS)
EXPERIMENTS = sorted({run.experiment for run in RUNS})
PROFILE_COMPRESSION = config.get("figures", {}).get("profile_compression")
# Which effective compression figures and tables show: paths (paibench's) or mica (the MiCA reference's rule).
EFFECTIVE_DEFINITION = config.get("figures", {}).get("effective_definition", "paths")


def experiment_stats(wildcards):
    """The mask statistics an experiment's figures draw (its runs' metrics come through the aggregate's listing)."""
    return [cached_result(run, str(paths.mask_stats(run.mask))) for run in RUNS
            if run.experiment == wildcards.experiment and GRID.methods[run.method].name != DENSE]  # dense: no stats


def paper_experiments(paper):
    return [name for name in EXPERIMENTS if paper in GRID.papers[name]]


def figure_files(experiment, ext="png"):
    return [paths.figure(experiment, name, ext) for name in FIGURE_NAMES]


FIGURES_TARGETS = [
    f for exp in EXPERIMENTS for ext in ("png", "pdf") for f in figure_files(exp, ext)
] + [paths.paper_table(paper, ext) for paper in PAPER_NAMES if paper_experiments(paper) for ext in TABLE_FORMATS]
