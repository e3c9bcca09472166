"""benchmarks/gpu_visit.py, the one command of a GPU visit: its --smoke mode runs every step end to end on
the CPU (so it is known to work before GPU time is spent on it) and writes one archive plus one log."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from collections import namedtuple

import pytest

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_visit.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_visit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # stdlib imports only: torch is imported by its subprocesses
    return module


gpu_visit = _module()


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.workflow
def test_smoke_visit_writes_one_archive_with_environment_and_every_step(tmp_path):
    """One test, so that the ~45 s smoke visit runs once even when pytest-xdist spreads tests over workers."""
    out = tmp_path / "visit"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_visit.log", "gpu_visit.tar.gz"]
    with tarfile.open(out / "gpu_visit.tar.gz") as tar:
        names = tar.getnames()

        def read(suffix: str) -> str:
            member = next(n for n in names if n.endswith(suffix))
            return tar.extractfile(member).read().decode()

        env = json.loads(read("/environment.json"))
        steps = json.loads(read("/steps.json"))
        table = read("/steps.md")
    # the archive mirrors the repository: benchmark files and validation results, never weights or masks
    assert all(n.startswith(("results/benchmarks/gpu_visit_smoke-", "results/validation/cifar10-smoke/")) for n in names)
    assert not any(n.endswith((".safetensors", ".pt")) for n in names)
    assert env["torch"] and "cuda_available" in env and env["commit"] and env["smoke"] is True
    assert env["command"].endswith(f"--smoke --out {out}")
    statuses = {row["step"]: row["status"] for row in steps["steps"]}
    assert list(statuses) == list(gpu_visit.STEPS)
    for name in gpu_visit.STEPS:
        assert f"| {name} |" in table and f"| {name} |" in proc.stdout  # the closing table names every step
    assert "| step | status | seconds | key figure |" in proc.stdout
    assert statuses["environment"] == "ok"
    assert statuses["bench_train"] == "ok" and statuses["force_vgg19"] == "ok", statuses
    keys = {row["step"]: row["key"] for row in steps["steps"]}
    if env["cuda_available"]:
        assert statuses["pytest_cuda"] == "skipped (smoke)", statuses
    else:  # the CUDA tier ran and skipped every test, and its JUnit report was read
        assert statuses["pytest_cuda"] == "ok" and "0 passed" in keys["pytest_cuda"], keys
        assert any(n.endswith("/pytest_cuda.xml") for n in names)
    if _has("snakemake"):
        assert statuses["validation"] == "ok", statuses
        runs = [n for n in names if n.startswith("results/validation/cifar10-smoke/runs/") and n.endswith("metrics.json")]
        assert len(runs) == 1 and "/mica_vgg16/" in runs[0]
        assert "results/validation/cifar10-smoke/tables/runs.csv" in names
        visits = [n for n in names if n.startswith("results/validation/cifar10-smoke/visits/")]
        assert len(visits) == 1
    else:
        assert statuses["validation"] == "skipped (no snakemake)"
    assert "archive:" in (out / "gpu_visit.log").read_text()
    # --collect (how a detached visit on a lent machine is fetched) copies the finished archive and the log
    into = tmp_path / "collected"
    got = subprocess.run([sys.executable, str(SCRIPT), "--collect", str(out), "--into", str(into), "--wait-s", "0"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert (into / "gpu_visit.tar.gz").read_bytes() == (out / "gpu_visit.tar.gz").read_bytes()
    assert (into / "gpu_visit.log").exists() and "collected" in got.stdout


def test_restore_copies_earlier_runs_without_weights_and_never_overwrites(tmp_path):
    prev, wd = tmp_path / "prev", tmp_path / "work"
    run = prev / "runs" / "e" / "d" / "a" / "m" / "c10" / "s0"
    run.mkdir(parents=True)
    for name in ("metrics.json", "eval.json", "epochs.csv", "model.safetensors"):
        (run / name).write_text("old")
    stats = prev / "masks" / "d" / "a" / "m" / "c10"
    stats.mkdir(parents=True)
    (stats / "s0.json").write_text("{}")
    (stats / "s0.safetensors").write_text("mask")
    other = prev / "runs" / "e" / "d" / "a" / "m" / "c10" / "s1"
    other.mkdir(parents=True)
    (other / "metrics.json").write_text("old")
    mine = wd / "results" / "runs" / "e" / "d" / "a" / "m" / "c10" / "s1" / "metrics.json"
    mine.parent.mkdir(parents=True)
    mine.write_text("this visit")
    assert gpu_visit.restore_runs(prev, wd) == 1  # s0 restored; s1 exists here already
    target = wd / "results" / "runs" / "e" / "d" / "a" / "m" / "c10" / "s0"
    assert sorted(p.name for p in target.iterdir()) == ["epochs.csv", "eval.json", "metrics.json"]
    assert (wd / "results" / "masks" / "d" / "a" / "m" / "c10" / "s0.json").exists()
    assert not (wd / "results" / "masks" / "d" / "a" / "m" / "c10" / "s0.safetensors").exists()
    assert mine.read_text() == "this visit"


def test_validation_runs_in_priority_order():
    """Claim 1 on VGG-16 first, then claim 2, claim 3; per experiment seed by seed, dense first, then the
    highest compression first."""
    Run = namedtuple("Run", "experiment dataset arch method compression seed")
    config = {"experiments": {"rreg_vgg16": {}, "other": {}, "force_vgg19": {}, "mica_vgg16": {}}}
    runs = [Run("rreg_vgg16", "d", "a", "rreg", "10", 0), Run("other", "d", "a", "random", "10", 0),
            Run("mica_vgg16", "d", "a", "rpi", "100", 1), Run("mica_vgg16", "d", "a", "mica", "100", 0),
            Run("mica_vgg16", "d", "a", "mica", "10000", 0), Run("mica_vgg16", "d", "a", "dense", "1", 0),
            Run("force_vgg19", "d", "a", "snip", "1000", 0)]
    order = [(r.experiment, r.method, r.compression, r.seed) for r in sorted(runs, key=gpu_visit.priority_key(config))]
    assert order == [("mica_vgg16", "dense", "1", 0), ("mica_vgg16", "mica", "10000", 0), ("mica_vgg16", "mica", "100", 0),
                     ("mica_vgg16", "rpi", "100", 1), ("force_vgg19", "snip", "1000", 0),
                     ("rreg_vgg16", "rreg", "10", 0), ("other", "random", "10", 0)]


def test_docstring_keeps_the_offline_wheel_recipe():
    doc = gpu_visit.__doc__
    assert "pip download --no-deps --only-binary=:all: --python-version 3.12" in doc
    assert "snakemake==9.27.1" in doc and "--no-index" in doc and "resources/cifar10-jpeg" in doc
