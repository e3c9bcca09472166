# paibench: pruning-at-initialization benchmarks. Default target: `rule all` (tables + figure of the config).
from snakemake.utils import min_version

min_version("8.20")


# The default grid only when no --configfile is given: Snakemake deep-merges `configfile:` with
# --configfile, which would add the default experiments to a user's own grid.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# The report's start page (snakemake --report report.html): the workflow and the config actually used.
report: "workflow/report/workflow.rst"


wildcard_constraints:
    experiment=r"[^/]+",
    dataset=r"[^/]+",
    arch=r"[^/]+",
    method=r"[^/]+",
    compression=r"[0-9.e+-]+",
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        paths.RUNS_CSV,
        paths.SUMMARY_CSV,
        f"{paths.OVERVIEW}.png",
        FIGURES_TARGETS,
    default_target: True
