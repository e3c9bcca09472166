"""End-to-end Snakemake runs on tiny configs in temporary working directories."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import REPO, planned_jobs, planned_masks, planned_runs, run_snakemake, tiny_config

pytestmark = pytest.mark.workflow


def test_default_config_dry_run(tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    jobs = planned_jobs(run_snakemake(tmp_path, config, "-n"))
    from paibench.config import Grid

    runs = len(Grid(config).runs)
    # runs are trained 13 to a process (pack: 13), each job writing eval.json too; masks are made in batches
    # (2 cores: at least 2 jobs per level, at most resources.mask_batch masks per job), one mask per run
    assert planned_runs(tmp_path, jobs) == runs and "train" not in jobs and "evaluate" not in jobs
    assert jobs["train_pack"] == 6  # (digits: 2 archs x 26 runs, sbm: 26 runs) in packs of 13
    assert planned_masks(tmp_path, jobs) == runs and "mask" not in jobs
    assert 2 <= jobs["mask_batch"] <= -(-runs // 25) + 2
    assert jobs["prepare_data"] == 2 and jobs["aggregate"] == jobs["plot"] == 1


def test_only_papers_with_experiments_get_a_table(tmp_path):
    # config/validation/planetoid-cpu.yaml has one `paper: mica` experiment: `snakemake` must not ask for the
    # FORCE and RReg tables (their table command would have no experiment to read).
    proc = run_snakemake(tmp_path, tiny_config(paper="mica"), "-n")
    assert planned_jobs(proc)["paper_table"] == 1
    assert "results/tables/mica.md" in proc.stdout and "results/tables/force.md" not in proc.stdout


def summary_columns(root):
    return pd.read_csv(root / "results/tables/summary.csv").columns


def _mask_batches_ran_from_job_files(workdir):
    """Every planned mask is one line (`--out MASK`) of one batch's jobs file, and Snakemake's metadata of each mask
    records a short command naming that file: a batch's N jobs on its command line would be stored with each of
    its 2N output files."""
    import base64
    import shlex

    from paibench import paths

    planned = [m for batch in json.loads((workdir / paths.BATCH_PLAN).read_text())["masks"] for m in batch]
    assert planned
    outs = []
    for jobs_file in (workdir / paths.MASK_BATCH_JOBS).parent.glob("*.txt"):
        for line in jobs_file.read_text().splitlines():
            args = shlex.split(line)
            outs.append(args[args.index("--out") + 1])
    assert sorted(outs) == sorted(planned)
    for mask in planned:
        record = json.loads((workdir / ".snakemake" / "metadata" / base64.b64encode(mask.encode()).decode()).read_text())
        assert "mask-batch --jobs-file .snakemake/paibench/mask_batch/" in record["shellcmd"], record["shellcmd"]
        assert len(record["shellcmd"]) < 300 and "--job " not in record["shellcmd"]


def test_real_run_produces_tables_and_figure_then_extension_reruns_only_new_jobs(tmp_path):
    config = tiny_config()
    run_snakemake(tmp_path, config)
    _mask_batches_ran_from_job_files(tmp_path)
    runs = pd.read_csv(tmp_path / "results/tables/runs.csv")
    assert len(runs) == 5 and set(runs["method"]) == {"dense", "random", "erk"}
    assert runs["accuracy_pct"].notna().all() and (runs["status"] == "ok").all()
    dense = runs[runs["method"] == "dense"]["accuracy_pct"].iloc[0]
    assert dense > 50  # 3 epochs on real digits: far above chance (10 %)
    # one unit: every accuracy column is in percent and says so
    acc_cols = [c for c in list(runs.columns) + list(summary_columns(tmp_path)) if "acc" in c]
    assert acc_cols and all(c.endswith("_pct") for c in acc_cols), acc_cols
    assert runs["eval_test_acc_pct"].between(0, 100).all()
    assert runs["macs_kept"].le(runs["macs"]).all() and runs["macs"].gt(0).all()
    summary = pd.read_csv(tmp_path / "results/tables/summary.csv")
    assert {"accuracy_mean_pct", "accuracy_std_pct", "effective_compression_mean"} <= set(summary.columns)
    for ext in ("png", "pdf"):
        assert (tmp_path / f"results/figures/accuracy_vs_compression.{ext}").stat().st_size > 5000
    metrics = json.loads(next((tmp_path / "results/runs").rglob("metrics.json")).read_text())
    for key in ("final_test_acc", "best_test_acc", "wall_time_s", "device", "parameters", "kept", "mask_sha256"):
        assert key in metrics
    assert (tmp_path / "logs").is_dir()

    # Nothing to do when nothing changed.
    assert planned_jobs(run_snakemake(tmp_path, config, "-n")) == {}

    # Widening: a seed, a compression and a method; only their jobs are planned.
    wider = tiny_config(seeds=[0, 1], compressions=[10, 100, 30], methods=["dense", "random", "erk"])
    jobs = planned_jobs(run_snakemake(tmp_path, wider, "-n"))
    # new runs: seed 1 -> dense + 2 methods x 3 ratios = 7; seed 0 -> 2 methods at ratio 30 = 2
    assert jobs["train"] == 9 and planned_masks(tmp_path, jobs) == 9 and "evaluate" not in jobs
    assert "prepare_data" not in jobs
