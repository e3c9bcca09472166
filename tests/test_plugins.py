"""Plug-ins: a pruning method and an architecture from a separately installed package, without editing
paibench (entry points in the paibench.methods / paibench.archs groups), and by module:attribute name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import BIN, planned_jobs, planned_masks, run_snakemake

pytestmark = pytest.mark.workflow  # pip-installs a package and runs Snakemake

PLUGIN = textwrap.dedent('''
    """A tiny external package: keep the first weights of every layer; a two-layer MLP."""
    import torch
    from torch import nn

    from paibench.models.base import ArchSpec
    from paibench.options import Option
    from paibench.pruning.core import MethodSpec, allocate, numels


    def _keep_first(ctx):
        sizes = numels(ctx.params)
        counts = allocate(sizes, {n: float(v) for n, v in sizes.items()}, ctx.target_kept)
        masks = {}
        for name, p in ctx.params.items():
            m = torch.zeros(p.numel(), dtype=torch.bool)
            m[: counts[name]] = True
            masks[name] = m.view(p.shape)
        return masks


    KEEP_FIRST = MethodSpec("keep_first", _keep_first, data_free=True, description="first weights of each layer")


    def _mlp(info, width, hidden=32):
        h = max(1, int(hidden * width))
        return nn.Sequential(nn.Flatten(), nn.Linear(info.channels * info.size[0] * info.size[1], h), nn.ReLU(),
                             nn.Linear(h, info.num_classes))


    def tiny_mlp():  # a factory works as well as the spec itself
        return ArchSpec("tinymlp", "image", _mlp, {"hidden": Option(int, 32, minimum=1)}, "two-layer MLP")
''')

PYPROJECT = textwrap.dedent('''
    [build-system]
    requires = ["setuptools"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "paibench-tinyplug"
    version = "0.1"

    [project.entry-points."paibench.methods"]
    keep_first = "tinyplug:KEEP_FIRST"

    [project.entry-points."paibench.archs"]
    tinymlp = "tinyplug:tiny_mlp"

    [tool.setuptools]
    py-modules = ["tinyplug"]
''')


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The plug-in package installed (pip, from its source folder) into its own site directory."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    src.mkdir()
    (src / "tinyplug.py").write_text(PLUGIN)
    (src / "pyproject.toml").write_text(PYPROJECT)
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(src)], check=True, capture_output=True, timeout=300)
    assert list(site.glob("paibench_tinyplug-0.1.dist-info/entry_points.txt"))
    return site


def _paibench(site, *args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run([str(BIN / "paibench"), *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_entry_points_are_listed_and_make_exact_masks(plugin_site, tmp_path):
    listed = _paibench(plugin_site, "list")
    assert listed.returncode == 0, listed.stderr
    assert "keep_first" in listed.stdout and "tinymlp" in listed.stdout
    out = tmp_path / "m.safetensors"
    made = _paibench(plugin_site, "mask", "--dataset", "digits", "--arch", "tinymlp", "--method", "keep_first",
                     "--compression", "4", "--seed", "0", "--out", str(out), "--arch-opt", "hidden=16")
    assert made.returncode == 0, made.stderr
    stats = json.loads(_paibench(plugin_site, "inspect", str(out), "--json").stdout)
    assert stats["total"] == 64 * 16 + 16 * 10 and stats["kept"] == round(stats["total"] / 4)
    # the method's own rule: every layer keeps a prefix of its flattened weights
    from safetensors.torch import load_file

    for name, m in load_file(str(out)).items():
        flat = m.flatten()
        assert flat[: int(flat.sum())].all(), name


def test_module_attribute_name_needs_no_entry_point(plugin_site, tmp_path):
    out = tmp_path / "m.safetensors"
    made = _paibench(plugin_site, "mask", "--dataset", "digits", "--arch", "tinyplug:tiny_mlp", "--method",
                     "tinyplug:KEEP_FIRST", "--compression", "2", "--seed", "0", "--out", str(out))
    assert made.returncode == 0, made.stderr
    bad = _paibench(plugin_site, "mask", "--dataset", "digits", "--arch", "vgg16", "--method", "tinyplug:MISSING",
                    "--compression", "2", "--seed", "0", "--out", str(tmp_path / "x.safetensors"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "'tinyplug:MISSING' could not be imported" in bad.stderr and not (tmp_path / "x.safetensors").exists()


def test_workflow_dry_run_plans_plugin_runs(plugin_site, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(plugin_site))
    config = {
        "train": {"epochs": 1, "batch_size": 32},
        "experiments": {"plug": {
            "datasets": ["digits"], "archs": ["tinymlp", {"name": "tinyplug:tiny_mlp", "hidden": 8}],
            "methods": ["keep_first", {"name": "tinyplug:KEEP_FIRST", "label": "kf"}, "random"],
            "compressions": [4], "seeds": [0]}},
    }
    proc = run_snakemake(tmp_path, config, "-n", "--quiet", "rules")
    jobs = planned_jobs(proc)
    assert planned_masks(tmp_path, jobs) == 6 and jobs.get("train") == 6, jobs
    # the module:attribute arch gets its spec's name as label (':' cannot be part of a path)
    code = ("import sys, yaml; from paibench.config import Grid; "
            "g = Grid(yaml.safe_load(open(sys.argv[1]))); print(sorted(g.archs), sorted(g.methods))")
    labels = subprocess.run([sys.executable, "-c", code, str(tmp_path / "config.yaml")], capture_output=True,
                            text=True, env=dict(os.environ), timeout=300)
    assert labels.returncode == 0, labels.stderr
    assert labels.stdout.split("] [") == ["['tinymlp', 'tinymlp_hidden=8'", "'keep_first', 'kf', 'random']\n"]


def test_config_naming_a_missing_plugin_is_one_line(plugin_site, tmp_path):
    from paibench.config import Grid
    from paibench.errors import PaibenchError

    config = {"experiments": {"e": {"datasets": ["digits"], "archs": ["vgg16"], "methods": ["nomodule_xyz:SPEC"],
                                    "compressions": [2], "seeds": [0]}}}
    with pytest.raises(PaibenchError) as err:
        Grid(config)
    text = str(err.value)
    assert text.startswith("config error at experiments.e.methods[0]:") and "could not be imported" in text
    assert "\n" not in text
