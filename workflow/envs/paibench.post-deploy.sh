#!/usr/bin/env bash
# Run by Snakemake once, inside the new environment, right after it created workflow/envs/paibench.yaml
# (Snakemake docs, "Providing post-deployment scripts"). Installs paibench from the checkout that runs the
# workflow: editable, so the environment always runs that checkout's code; --no-deps, because paibench.yaml
# brings every dependency from conda-forge; --no-index and --no-build-isolation, so pip downloads nothing.
# PAIBENCH_SOURCE is the checkout's folder, set by workflow/rules/common.smk when Snakemake reads the
# workflow (Snakemake copies this script to .snakemake/conda/, so it cannot find the checkout by itself).
set -euo pipefail
: "${PAIBENCH_SOURCE:?is unset: create this environment through snakemake --sdm conda (workflow/rules/common.smk sets it)}"
python -m pip install --no-deps --no-index --no-build-isolation --editable "$PAIBENCH_SOURCE"
paibench --version
