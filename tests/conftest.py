"""Shared fixtures: small real datasets, and a runner for Snakemake in a temporary working directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent


def pytest_configure(config):
    """One torch thread per test process when xdist runs several: two workers with a thread per core each
    oversubscribe the cores, and OpenMP's spinning threads then slow every tensor op many times over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def shared_data(*parts) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (../shared/data beside the checkout); not present here")
    return path


@pytest.fixture(scope="session")
def digits_payload():
    from paibench.data import DATASETS

    spec = DATASETS.get("digits")
    return spec.prepare(spec.parse_options({}), Path("."))


@pytest.fixture(scope="session")
def digits_file(tmp_path_factory, digits_payload):
    from paibench.data import save_prepared

    path = tmp_path_factory.mktemp("data") / "digits.pt"
    save_prepared(digits_payload, path)
    return path


def copy_package_source(dest: Path) -> Path:
    """What building paibench needs (pyproject, README, LICENSE, the package), copied to `dest`."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "paibench", dest / "paibench", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def tiny_config(**overrides) -> dict:
    """A grid that trains in seconds: digits, VGG-16 at width 1/8, 3 epochs."""
    exp = {
        "datasets": ["digits"],
        "archs": [{"name": "vgg16", "width": 0.125}],
        "methods": ["dense", "random", "erk"],
        "compressions": [10, 100],
        "seeds": [0],
    }
    exp.update(overrides)
    return {
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.05},
        "experiments": {"tiny": exp},
    }


def run_snakemake(workdir: Path, config: dict, *args: str, check: bool = True, timeout: float = 600):
    """Run the repository's workflow with `config` in `workdir`; returns the CompletedProcess."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(cfg),
           "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned_jobs(proc) -> dict[str, int]:
    """Job counts per rule from the 'Job stats' table of a dry run (empty when nothing is to be done); the
    generated rules mask_batch_<id> and train_pack_<id> are counted as 'mask_batch' and 'train_pack'."""
    counts: dict[str, int] = {}
    lines = (proc.stdout + proc.stderr).splitlines()
    if "Job stats:" not in lines:
        return counts
    for line in lines[lines.index("Job stats:") + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        name = re.sub(r"^(mask_batch|train_pack)_[0-9a-f]{12}$", r"\1", parts[0])
        counts[name] = counts.get(name, 0) + int(parts[1])
    return counts


def planned_masks(workdir: Path, jobs: dict[str, int]) -> int:
    """Masks a run (or dry run) of the workflow in `workdir` makes: solo mask jobs plus every mask of a batch
    (the main process's batch plan, paibench.paths.BATCH_PLAN)."""
    from paibench import paths

    plan = json.loads((workdir / paths.BATCH_PLAN).read_text())
    return jobs.get("mask", 0) + sum(len(batch) for batch in plan["masks"])


def planned_runs(workdir: Path, jobs: dict[str, int]) -> int:
    """Runs a (dry) run trains: solo training jobs plus every member of a pack (the batch plan)."""
    from paibench import paths

    plan = json.loads((workdir / paths.BATCH_PLAN).read_text())
    return jobs.get("train", 0) + sum(len(pack) for pack in plan["packs"])
