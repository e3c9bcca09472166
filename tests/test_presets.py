"""Paper presets: each validates against the schema and the registries, and dry-runs without any data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, planned_jobs, run_snakemake
from paibench.config import Grid
from paibench import names
from paibench.training import TRAIN_OPTIONS

PRESETS = sorted((REPO / "config" / "paper").glob("*.yaml"))
PAPERS = tuple(names.PAPERS)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_every_paper_has_a_preset_and_a_quick_twin():
    names = {p.stem for p in PRESETS}
    for paper in PAPERS:
        assert {paper, f"{paper}-quick"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_validates(path):
    grid = Grid(_load(path))
    assert grid.runs
    assert set(grid.train) == set(_load(path)["experiments"])
    for cfg in grid.train.values():
        assert set(cfg) == set(TRAIN_OPTIONS)


@pytest.mark.parametrize("paper", PAPERS)
def test_quick_twin_is_smaller_on_the_same_kinds_of_axes(paper):
    full, quick = Grid(_load(REPO / "config" / "paper" / f"{paper}.yaml")), Grid(_load(REPO / "config" / "paper" / f"{paper}-quick.yaml"))
    assert len(quick.runs) < len(full.runs)
    assert max(c["epochs"] for c in quick.train.values()) < min(c["epochs"] for c in full.train.values())
    assert {d.type for d in quick.datasets.values()} <= {d.type for d in full.datasets.values()}
    assert {a.name for a in quick.archs.values()} <= {a.name for a in full.archs.values()}
    assert {m.name for m in quick.methods.values()} <= {m.name for m in full.methods.values()}
    assert len({r.seed for r in quick.runs}) <= len({r.seed for r in full.runs})


@pytest.mark.workflow  # Snakemake dry runs
@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_dry_run_without_data(tmp_path, path):
    config = _load(path)
    proc = run_snakemake(tmp_path, config, "-n", "--quiet", "rules")
    jobs = planned_jobs(proc)
    grid = Grid(config)
    assert jobs.get("train") == len(grid.runs)
    assert jobs.get("prepare_data") == len(grid.datasets)
    assert not (tmp_path / "resources" / "data").exists()  # nothing was prepared or downloaded
