"""Cached results are reused only while everything that produced them is unchanged.

A fresh clone has the committed metrics and mask statistics but no Snakemake metadata: changing a recipe
value, a method, architecture or dataset option of a committed experiment must rerun exactly its runs,
and say which and why.
"""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml

from conftest import REPO, planned_jobs, planned_masks, planned_runs, run_snakemake

pytestmark = pytest.mark.workflow

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture()
def clone(tmp_path):
    """A work folder holding what a fresh clone has under results/ (metrics, mask statistics, tables)."""
    for sub in ("runs", "masks", "tables", "figures"):
        shutil.copytree(REPO / "results" / sub, tmp_path / "results" / sub)
    return tmp_path


def _runs_of(experiment: str) -> int:
    exp = DEFAULT["experiments"][experiment]
    per_arch = len(exp["seeds"]) * (1 + (len(exp["methods"]) - 1) * len(exp["compressions"]))
    return per_arch * len(exp["archs"]) * len(exp["datasets"])


def test_unchanged_config_reuses_every_cached_result(clone):
    jobs = planned_jobs(run_snakemake(clone, DEFAULT, "-n", "--quiet", "rules"))
    assert planned_runs(clone, jobs) == 0 and planned_masks(clone, jobs) == 0


def test_changed_recipe_reruns_exactly_that_experiments_runs(clone):
    config = copy.deepcopy(DEFAULT)
    config["experiments"]["sbm"]["train"]["lr"] = 0.02
    proc = run_snakemake(clone, config, "-n", "--quiet", "rules")
    jobs = planned_jobs(proc)
    assert planned_runs(clone, jobs) == _runs_of("sbm")
    # the masks do not depend on the recipe: none is stale (a clone has no mask files, so those of the
    # retrained runs are made again, byte-identical)
    assert "0 cached mask(s)" in proc.stderr and planned_masks(clone, jobs) == _runs_of("sbm")
    assert "cached run(s) no longer match the config" in proc.stderr and "train.lr: 0.01 -> 0.02" in proc.stderr


def test_changed_dataset_option_recomputes_its_masks_and_runs(clone):
    config = copy.deepcopy(DEFAULT)
    config.setdefault("datasets", {})["sbm"] = {**(DEFAULT.get("datasets", {}).get("sbm") or {}), "p_in": 0.31}
    proc = run_snakemake(clone, config, "-n", "--quiet", "rules")
    jobs = planned_jobs(proc)
    sbm_masks = _runs_of("sbm")  # one mask per run here (no two experiments share one)
    assert planned_runs(clone, jobs) == _runs_of("sbm") and planned_masks(clone, jobs) == sbm_masks
    assert f"{sbm_masks} cached mask(s) and {_runs_of('sbm')} cached run(s)" in proc.stderr
    assert "dataset.options.p_in" in proc.stderr
