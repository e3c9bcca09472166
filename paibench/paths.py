"""Every artifact path of the workflow and the run key, once. Config, rules, training and analysis all
build their paths here; patterns use Snakemake's ``{wildcard}`` syntax so rules can use them as they are.
All paths are relative to the workflow's working directory.
"""

from __future__ import annotations

from pathlib import Path

# A run's key = its folder below results/runs: what it is, in the config's labels. It seeds every random
# draw of its training (training.run.RunSpec.run_key).
RUN_KEY = "{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}"
MASK_KEY = "{dataset}/{arch}/{method}/c{compression}/s{seed}"  # a mask is shared by the experiments that use it

RAW_DIR = "resources/raw"  # downloads and raw files
DATA = "resources/data/{dataset}.pt"  # a prepared dataset (training and data-dependent masks read only this)
DATA_RECORD = "resources/data/{dataset}.json"  # what it was prepared from (stale detection)

MASKS_ROOT = "results/masks"
MASK = f"{MASKS_ROOT}/{MASK_KEY}.safetensors"
MASK_STATS = f"{MASKS_ROOT}/{MASK_KEY}.json"

RUNS_ROOT = "results/runs"
RUN_DIR = f"{RUNS_ROOT}/{RUN_KEY}"
# The files of a run's folder (a solo run, a packed run and a direct `paibench train` write the same ones).
METRICS, EPOCHS, MODEL, EVAL = "metrics.json", "epochs.csv", "model.safetensors", "eval.json"
RESULT_FILES = (METRICS, EVAL)  # what tables and figures read of a run: with both, it needs no training job
CHECKPOINTS_ROOT = "results/checkpoints"
# checkpoint of a workflow run while it trains (rewritten every train.checkpoint_interval_s)
CHECKPOINT = f"{CHECKPOINTS_ROOT}/{RUN_KEY}.pt"
DIRECT_CHECKPOINT = "checkpoint.pt"  # in --out-dir, for a direct `paibench train` without --checkpoint

TABLES_DIR = "results/tables"
RUNS_CSV, SUMMARY_CSV, SUMMARY_MD = (f"{TABLES_DIR}/runs.csv", f"{TABLES_DIR}/summary.csv",
                                     f"{TABLES_DIR}/summary.md")
METRICS_LIST = f"{TABLES_DIR}/.metrics-list.txt"
PAPER_TABLE = TABLES_DIR + "/{paper}.{ext}"
FIGURES_DIR = "results/figures"
OVERVIEW = f"{FIGURES_DIR}/accuracy_vs_compression"  # + .png / .pdf
FIGURE = FIGURES_DIR + "/{experiment}/{name}.{ext}"  # the figures of one experiment: figure_dir(experiment)

LOGS = "logs"
BATCH_PLAN = ".snakemake/paibench/batches.json"  # which mask batches and packs the main process made rules for
# One mask batch's jobs, a `paibench mask` argument line per mask, written with the plan. A file, not the shell
# command: Snakemake stores a job's command in the metadata of each of its outputs (2 per mask), so a batch of
# N masks on the command line would store N^2 argument lines.
MASK_BATCH_JOBS = ".snakemake/paibench/mask_batch/{id}.txt"
# One training pack's members (`paibench train-pack --manifest`), a JSON list written with the plan, for the same
# reason: a pack of N runs has 4N outputs, and N member objects on its command line would cost each of them.
TRAIN_PACK_MANIFEST = ".snakemake/paibench/train_pack/{id}.json"


def run_key(experiment: str, dataset: str, arch: str, method: str, compression: str, seed: int) -> str:
    return RUN_KEY.format(experiment=experiment, dataset=dataset, arch=arch, method=method,
                          compression=compression, seed=seed)


def mask(dataset: str, arch: str, method: str, compression: str, seed: int) -> str:
    return MASK.format(dataset=dataset, arch=arch, method=method, compression=compression, seed=seed)


def mask_stats(mask_file: str | Path) -> Path:
    """The statistics JSON beside a mask file (its own name with .json)."""
    return Path(mask_file).with_suffix(".json")


def data(dataset: str) -> str:
    return DATA.format(dataset=dataset)


def data_record(dataset: str) -> str:
    return DATA_RECORD.format(dataset=dataset)


def run_dir(key: str) -> str:
    return f"{RUNS_ROOT}/{key}"


def checkpoint(key: str) -> str:
    return f"{CHECKPOINTS_ROOT}/{key}.pt"


def paper_table(paper: str, ext: str) -> str:
    return PAPER_TABLE.format(paper=paper, ext=ext)


def figure(experiment: str, name: str, ext: str) -> str:
    return FIGURE.format(experiment=experiment, name=name, ext=ext)


def figure_dir(experiment: str) -> str:
    return str(Path(figure(experiment, "name", "png")).parent)


def in_run(run_folder: str | Path, name: str) -> str:
    return f"{run_folder}/{name}"


def run_key_from(wildcards) -> str:
    """The run key of a rule's wildcards."""
    return run_key(wildcards.experiment, wildcards.dataset, wildcards.arch, wildcards.method,
                   wildcards.compression, wildcards.seed)
