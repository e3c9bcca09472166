# Helpers shared by all .smk files (the validated grid; wildcard -> CLI argument lookups).
import json
from pathlib import Path
import shlex
import sys

from paibench.config import Grid, SCHEMA_PATH
from paibench.errors import PaibenchError

try:
    # Validates against workflow/schemas/config.schema.yaml plus semantic checks, before any job.
    GRID = Grid(config, schema_path=workflow.source_path("../schemas/config.schema.yaml"))
except PaibenchError as exc:
    sys.stderr.write(f"paibench: {exc}\n")
    raise SystemExit(1)

RUNS = GRID.runs
RES = GRID.resources


def quoted(args):
    return " ".join(shlex.quote(str(a)) for a in args)


def dataset_args(wildcards):
    return quoted(GRID.dataset_args(wildcards.dataset))


def arch_args(wildcards):
    return quoted(GRID.arch_args(wildcards.arch))


def method_args(wildcards):
    return quoted(GRID.method_args(wildcards.method))


def dataset_type(wildcards):
    return GRID.datasets[wildcards.dataset].type


def train_config(wildcards):
    return json.dumps(GRID.train[wildcards.experiment], sort_keys=True)


def write_lines(path, lines):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{line}\n" for line in lines))


def all_metrics():
    return [f"{run.run_dir}/metrics.json" for run in RUNS]


def all_evals():
    return [f"{run.run_dir}/eval.json" for run in RUNS]
