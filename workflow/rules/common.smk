# Helpers shared by all .smk files (the validated grid; wildcard -> CLI argument lookups).
import hashlib
import json
import os
from pathlib import Path
import re
import shlex
import sys

from paibench import paths
from paibench.config import Grid, SCHEMA_PATH, load_config_file
from paibench.errors import PaibenchError

# Under --sdm conda, workflow/envs/paibench.post-deploy.sh installs paibench into the rules' environment from
# this checkout (Snakemake runs it from a copy under .snakemake/conda/, so it cannot find the checkout itself).
os.environ.update(PAIBENCH_SOURCE=str(Path(workflow.basedir).resolve()))

try:
    # Snakemake's YAML reader keeps the last of two equal keys silently: read each config file strictly first.
    for _configfile in workflow.configfiles:
        load_config_file(_configfile)
    # Validates against the package's schema (paibench/schemas/config.schema.yaml) plus semantic checks, before any job.
    GRID = Grid(config, schema_path=SCHEMA_PATH)
except PaibenchError as exc:
    sys.stderr.write(f"paibench: {exc}\n")
    raise SystemExit(1)

RUNS = GRID.runs
RES = GRID.resources
RUN_BY_KEY = {run.key: run for run in RUNS}
RUN_BY_MASK = {run.mask: run for run in RUNS}  # any run of a mask: they share its spec

# Cached results whose recorded spec no longer matches the config (a changed recipe, option or dataset) are
# recomputed, never read as results: their files go into Snakemake's --forcerun set, which works without
# Snakemake's metadata (as in a fresh clone). Only in the main process: a cluster job parses this file too
# and must build just its own target.
STALE_RUNS, STALE_MASKS = GRID.stale()
STALE_DATA = GRID.stale_data()
_forced = ([RUN_BY_KEY[key].file(paths.METRICS) for key in STALE_RUNS] + list(STALE_MASKS)
           + [paths.data(label) for label in STALE_DATA])
if _forced and workflow.is_main_process:
    # Snakemake sets the workflow's DAG settings only after this file is parsed: add the stale files to
    # --forcerun when it does (the one place paibench reaches into Snakemake's objects).
    class _ForceStale(type(workflow)):
        @property
        def dag_settings(self):
            return self.__dict__.get("_paibench_dag_settings")

        @dag_settings.setter
        def dag_settings(self, value):
            if value is not None:
                value.forcerun = frozenset(value.forcerun or ()) | set(_forced)
            self.__dict__["_paibench_dag_settings"] = value

    _settings = workflow.__dict__.get("dag_settings")
    workflow.__class__ = _ForceStale
    workflow.dag_settings = _settings
if STALE_RUNS or STALE_MASKS or STALE_DATA:
    _shown = list(STALE_DATA.items())[:3] + list(STALE_MASKS.items())[:5] + list(STALE_RUNS.items())[:5]
    sys.stderr.write(f"paibench: {len(STALE_DATA)} prepared dataset(s), {len(STALE_MASKS)} cached mask(s) and "
                     f"{len(STALE_RUNS)} cached run(s) no longer match the config and will be recomputed "
                     f"(what changed):\n" + "".join(f"  {key}: {why}\n" for key, why in _shown))

# Local runs: a training job on CUDA holds one `gpu` and at most <visible GPUs> run at once (unless
# --resources gpu=N is given); `paibench train` then picks which GPU (paibench/gpu_slots.py). Under an
# executor plugin such as SLURM the profile's set-resources decide (train: gpu: 1) and nothing is capped.
from paibench.gpu_slots import visible_gpu_count

LOCAL_GPUS = visible_gpu_count() if workflow.local_exec else 0
if LOCAL_GPUS and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", LOCAL_GPUS)


def train_gpus(wildcards):
    return 1 if LOCAL_GPUS and GRID.train[wildcards.experiment]["device"] != "cpu" else 0


def quoted(args):
    return " ".join(shlex.quote(str(a)) for a in args)


def dataset_args(wildcards):
    return quoted(GRID.dataset_args(wildcards.dataset))


def budget_mask(wildcards):
    return GRID.budget_mask(wildcards.method, wildcards.dataset, wildcards.arch, wildcards.compression,
                            int(wildcards.seed))


def cached_result(run, path):
    """``path`` (a result of ``run``) as an input of rules that only read results (tables, figures).

    A result that exists while its run's mask file does not is a cached result: a fresh clone has the
    committed metrics and mask statistics but no masks or weights. It is given as an absolute path, which no
    rule's output pattern matches, so Snakemake reads it as source data instead of scheduling the mask and
    the training again. Every other result keeps its relative path and so its producing rule.
    """
    if not Path(run.mask).exists() and Path(path).exists() and run.key not in STALE_RUNS:
        return str(Path(path).resolve())
    return path


def all_metrics():
    return [cached_result(run, run.file(paths.METRICS)) for run in RUNS]


# ---- Batched jobs: the one place besides cached_result where the DAG depends on files that exist ----------
# Mask batches (resources.mask_batch > 1) and training packs (an experiment's `pack: N`) are rules generated from
# the masks and runs not made yet when the workflow is parsed: finished ones get no batch (their files are kept),
# so widening the grid only computes what is new. The main process records the plan, and a cluster job (which
# parses this file again on its node, when other batches may have finished) reads it back, so every job finds
# the rule it was submitted as.
def run_done(run):
    """Trained, or a cached result (a fresh clone has no weights): what tables read exists and matches the config."""
    return run.key not in STALE_RUNS and all(Path(run.file(name)).exists() for name in paths.RESULT_FILES)


def mask_made(mask):
    return mask not in STALE_MASKS and Path(mask).exists() and paths.mask_stats(mask).exists()


def masks_todo():
    """Masks still to be made: those of runs still to be trained, and the budget masks they read."""
    todo = {run.mask for run in RUNS if not run_done(run) and not mask_made(run.mask)}
    reads = [run for run in RUNS if run.mask in todo]
    while reads:
        sources = {b for run in reads for b in GRID.budget_mask(run.method, run.dataset, run.arch, run.compression,
                                                               run.seed) if b not in todo and not mask_made(b)}
        todo |= sources
        reads = [run for run in RUNS if run.mask in sources]
    return todo


def _local_cores():
    """Cores for mask batches to keep busy: `--cores N`. While the Snakefile is parsed Snakemake reports 1 under
    `--jobs`/`-j` (so on a cluster profile, where each batch is its own job anyway), and its executor is not set
    yet (workflow.local_exec is True even for SLURM)."""
    try:
        return int(workflow.cores)
    except Exception:  # no --cores given (Snakemake then refuses to run anyway)
        return 1


def batch_id(keys):
    return hashlib.sha256(" ".join(keys).encode()).hexdigest()[:12]


def mask_batch_id(batch) -> str:
    """A mask batch's id: its rule's name, log and jobs file."""
    return batch_id(r.mask for r in batch)


def pack_id(pack) -> str:
    """A training pack's id: its rule's name, log and manifest."""
    return batch_id(r.key for r in pack)


def mask_batch_jobs(batch) -> str:
    """The file holding a mask batch's jobs (paths.MASK_BATCH_JOBS), written with the plan."""
    return paths.MASK_BATCH_JOBS.format(id=mask_batch_id(batch))


def pack_member(run):
    return GRID.training_spec(run).member_json()


def pack_manifest(pack) -> str:
    """The file holding a training pack's members (paths.TRAIN_PACK_MANIFEST), written with the plan."""
    return paths.TRAIN_PACK_MANIFEST.format(id=pack_id(pack))


def _mask_batch_budget() -> dict:
    """A batch also ends before the estimated work of its masks (paibench.estimate: model size, pruning rounds,
    scoring FLOPs) passes a quarter of resources.mask_runtime, the time after which a cluster stops its job: the
    estimate is rough (within 2x on one CPU thread for the methods measured), and 25 FORCE masks at T = 300 would
    otherwise share one job of hours. Applied locally too (the plan cannot tell: Snakemake names the executor only
    after parsing), where a batch of that much work pays nothing noticeable for its own process. Only methods with
    scoring passes or pruning rounds are estimated (a data-free mask takes about a second at most, and this
    builds each network on the meta device, which imports torch)."""
    from paibench.estimate import GridCosts

    costs = GridCosts(GRID)
    return {"work_s": lambda run: costs.run_mask_work_s(run) if costs.scores(run.method) else 0.0,
            "budget_s": RES["mask_runtime"] * 60 / 4}


_PLAN = Path(paths.BATCH_PLAN)
# resources.mask_batch > 1: every mask is made by a batch rule and a mask already made has no rule at all (a rule
# now would differ from the batch that made it, and Snakemake would remake the mask and retrain its runs).
# resources.mask_batch == 1: one `rule mask` job per mask, as before batches existed. Choose before a first run.
MASK_BATCHED = RES["mask_batch"] > 1
if workflow.is_main_process or not _PLAN.exists():
    from paibench.utils import atomic_path, write_json

    MASK_BATCHES = GRID.mask_batches(masks_todo(), RES["mask_batch"], _local_cores(), **_mask_batch_budget()) \
        if MASK_BATCHED else []
    PACKS = GRID.packs(run_done)
    for _batch in MASK_BATCHES:
        with atomic_path(mask_batch_jobs(_batch)) as _tmp:
            _tmp.write_text("".join(quoted(GRID.mask_args(r)) + "\n" for r in _batch))
    for _pack in PACKS:
        with atomic_path(pack_manifest(_pack)) as _tmp:
            _tmp.write_text("[\n" + ",\n".join(pack_member(r) for r in _pack) + "\n]\n")
    if workflow.is_main_process:  # also in a dry run: the plan is what it shows
        write_json(_PLAN, {"masks": [[r.mask for r in b] for b in MASK_BATCHES],
                           "packs": [[r.key for r in p] for p in PACKS]})
else:
    _plan = json.loads(_PLAN.read_text())
    MASK_BATCHES = [[RUN_BY_MASK[m] for m in b] for b in _plan["masks"]]
    PACKS = [[RUN_BY_KEY[k] for k in p] for p in _plan["packs"]]


def train_args(wildcards):
    return quoted(GRID.train_args(RUN_BY_KEY[paths.run_key_from(wildcards)]))


def mask_args(wildcards):
    return quoted(GRID.mask_args(RUN_BY_MASK[paths.mask(wildcards.dataset, wildcards.arch, wildcards.method,
                                                        wildcards.compression, int(wildcards.seed))]))
