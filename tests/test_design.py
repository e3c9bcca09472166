"""Structural promises: reading a config imports no torch (check-config, list, and Snakemake's parse while the masks
still to make are data-free: a scoring method's mask batches are sized by building its networks on the meta device),
and the built wheel works on its own from an unrelated folder (schema and registries ship inside the package)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO, copy_package_source, tiny_config

# A sitecustomize that makes `import torch` fail in every Python process started with it on PYTHONPATH
# (importlib.util.find_spec still answers: finding a package is not importing it).
BLOCK_TORCH = textwrap.dedent('''
    import importlib.abc, importlib.machinery, sys

    class _Refuse(importlib.abc.Loader):
        def create_module(self, spec):
            raise ImportError(f"{spec.name} is blocked: reading a config must not import torch")

        def exec_module(self, module):
            raise ImportError("blocked")

    class _BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                return importlib.machinery.ModuleSpec(name, _Refuse())
            return None

    sys.meta_path.insert(0, _BlockTorch())
''')


@pytest.fixture
def no_torch_env(tmp_path):
    site = tmp_path / "block"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = dict(os.environ, PYTHONPATH=str(site), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked" in probe.stderr  # the blocker works
    return env


def test_reading_configs_imports_no_torch(no_torch_env, tmp_path):
    configs = [REPO / "config/config.yaml", *sorted(REPO.glob("config/paper/mica*.yaml")),
               *sorted(REPO.glob("config/paper/force*.yaml"))]
    code = ("import sys; from paibench.config import Grid, load_config_file\n"
            "for f in sys.argv[1:]:\n"
            "    g = Grid(load_config_file(f)); g.stale(); g.stale_data(); print(f, len(g.runs))")
    read = subprocess.run([sys.executable, "-c", code, *map(str, configs)], env=no_torch_env, capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert read.returncode == 0, read.stderr[-2000:]
    assert len(read.stdout.splitlines()) == len(configs)
    for argv in (["check-config", str(REPO / "config/config.yaml")], ["list"]):
        proc = subprocess.run([str(BIN / "paibench"), *argv], env=no_torch_env, capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
    # the compute estimate is the part that builds models: it needs torch and says so only when asked
    est = subprocess.run([str(BIN / "paibench"), "check-config", str(REPO / "config/config.yaml"), "--estimate"],
                         env=no_torch_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert est.returncode != 0 and "blocked" in est.stderr


@pytest.mark.workflow  # one Snakemake dry run (its parse of the Snakefile, without torch)
def test_snakemake_parse_imports_no_torch(no_torch_env, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    proc = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile",
                           str(cfg), "-n", "--cores", "1"], env=no_torch_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Job stats:" in proc.stdout + proc.stderr


@pytest.mark.workflow  # builds a wheel and a virtualenv (~20 s)
def test_built_wheel_works_from_an_unrelated_folder(tmp_path):
    src = copy_package_source(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(dist), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("paibench-*.whl"))
    assert "paibench/schemas/config.schema.yaml" in zipfile.ZipFile(wheel).namelist()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    # The dependencies (torch, pandas, ...) come from this environment; paibench itself only from the wheel.
    site = subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}

    def run(*argv):
        proc = subprocess.run([str(venv / "bin/paibench"), *argv], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    where = subprocess.run([str(venv / "bin/python"), "-c", "import paibench; print(paibench.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(site), where  # the wheel's copy, not the checkout's
    (elsewhere / "grid.yaml").write_text(yaml.safe_dump(tiny_config()))
    assert "valid; 5 runs" in run("check-config", "grid.yaml")
    assert "mica" in run("list")
    run("mask", "--dataset", "cifar10", "--arch", "resnet20", "--method", "erk", "--compression", "10", "--seed", "0",
        "--out", "m.safetensors")
    assert (elsewhere / "m.safetensors").stat().st_size > 0 and (elsewhere / "m.json").is_file()
