"""`snakemake --sdm conda` (the same as --use-conda): every rule that runs a command has a conda environment
under workflow/envs/ that installs what the command needs, paibench included, from conda-forge only, with
the minimum versions of pyproject.toml and the same pins as envs/environment.yaml.

No network and no conda: the rules come from Snakemake's own parse of the workflow, the environment files
are read as YAML, and the post-deploy script that installs paibench runs in a plain venv. Whether conda can
solve the environments from conda-forge is not checked here (conda-forge cannot be reached from CI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import copy_package_source

pytestmark = pytest.mark.workflow  # parses the workflow with Snakemake and builds a virtualenv

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "workflow" / "envs"
PROJECT_ENV = REPO / "envs" / "environment.yaml"
CHANNELS = ["conda-forge", "nodefaults"]

# pyproject.toml's distribution names -> conda-forge's package names (the others are the same).
CONDA_NAME = {"torch": "pytorch", "torch-geometric": "pytorch_geometric", "matplotlib": "matplotlib-base"}

# What each `paibench <subcommand>` a rule runs imports, as conda-forge packages. Every subcommand imports
# torch: tables and figures read results through paibench.pruning. prepare-data: digits (scikit-learn),
# Planetoid (pytorch_geometric), ogbn-arxiv (ogb), image folders (pillow); training and evaluation score
# ogbn-arxiv with ogb's Evaluator. A rule that runs a subcommand missing here fails the test: add it.
NEEDS = {
    "prepare-data": {"pytorch", "numpy", "scikit-learn", "pytorch_geometric", "ogb", "pillow", "pyyaml"},
    "mask": {"pytorch", "numpy", "safetensors"},
    "mask-batch": {"pytorch", "numpy", "safetensors"},
    "train": {"pytorch", "numpy", "safetensors", "ogb"},
    "train-pack": {"pytorch", "numpy", "safetensors", "ogb"},
    "evaluate": {"pytorch", "numpy", "safetensors", "ogb"},
    "aggregate": {"pytorch", "pandas", "numpy"},
    "tables": {"pytorch", "pandas", "numpy"},
    "figures": {"pytorch", "pandas", "numpy", "matplotlib-base", "seaborn"},
    "plot": {"pandas", "numpy", "matplotlib-base", "seaborn"},
}

# Loads the workflow with Snakemake's API (what `snakemake -n` parses) and prints its rules. The rules'
# conda directives have no public listing, hence the workflow object behind the API.
_LIST_RULES = r"""
import json, os, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.enums import Quietness
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

snakefile, workdir, configfile = map(Path, sys.argv[1:4])
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=snakefile, workdir=workdir,
                            config_settings=ConfigSettings(configfiles=[configfile]))
    rules = [{
        "name": rule.name,
        "runs_command": not rule.norun,
        "command": rule.shellcmd or (rule.run_func_src if rule.is_run else None),
        "conda": None if rule.conda_env is None else str(rule.conda_env),
        "basedir": rule.basedir.get_path_or_uri(secret_free=True),
    } for rule in workflow._workflow.rules]
print("RULES=" + json.dumps({"rules": rules, "paibench_source": os.environ.get("PAIBENCH_SOURCE")}))
"""


def _spec(dep: str) -> tuple[str, str, str]:
    """'pytorch>=2.2' -> ('pytorch', '>=', '2.2'); 'pip' -> ('pip', '', '')."""
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(>=|==|=|<=|<|>|!=)?\s*([^\s,]*)", dep.strip())
    assert m, f"unexpected dependency spec {dep!r}"
    return m.group(1).lower(), m.group(2) or "", m.group(3) or ""


def _load_env(path: Path) -> dict:
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and isinstance(env.get("dependencies"), list), f"{path}: not a conda env file"
    return env


def _conda_deps(env: dict) -> dict[str, str]:
    """The conda (not pip) dependencies, name -> the spec as written."""
    deps = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            deps[_spec(dep)[0]] = dep.strip()
    return deps


def _pyproject_deps() -> list[tuple[str, str, str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [_spec(d) for d in project["dependencies"] + project["optional-dependencies"]["graph"]]


def _rule_envs() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    """The workflow's rules as Snakemake parses them, for a grid with a packed experiment (so that the
    generated train_pack_* rule exists too). The rules do not depend on the datasets."""
    work = tmp_path_factory.mktemp("parse")
    config = {
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05},
        "pack": 2,
        "experiments": {
            "img": {"datasets": ["digits"], "archs": [{"name": "vgg16", "width": 0.125}],
                    "methods": ["dense", "random"], "compressions": [10], "seeds": [0, 1]},
        },
    }
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "PAIBENCH_SOURCE"}
    proc = subprocess.run([sys.executable, "-c", _LIST_RULES, str(REPO / "Snakefile"), str(work), str(cfg)],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RULES=")]
    assert proc.returncode == 0 and lines, f"parsing the workflow failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RULES="):])


def _command_rules(parsed) -> list[dict]:
    return [rule for rule in parsed["rules"] if rule["runs_command"]]


def _env_path(rule) -> Path:
    return (Path(rule["basedir"]) / rule["conda"]).resolve()


def test_the_parse_sees_every_kind_of_rule(parsed):
    names = {rule["name"] for rule in _command_rules(parsed)}
    assert {"prepare_data", "mask", "train", "aggregate", "plot", "experiment_figures",
            "paper_table"} <= names, names
    assert any(name.startswith("train_pack_") for name in names), names
    assert any(name.startswith("mask_batch_") for name in names), names


def test_every_rule_that_runs_a_command_has_a_conda_env_under_workflow_envs(parsed):
    for rule in _command_rules(parsed):
        assert rule["conda"], f"rule {rule['name']} runs a command but has no conda: directive"
        path = _env_path(rule)
        assert path.parent == ENVS.resolve() and path.is_file(), f"rule {rule['name']}: {path} is not a file in {ENVS}"


def test_each_rules_env_installs_what_its_command_calls(parsed):
    for rule in _command_rules(parsed):
        command = rule["command"] or ""
        subcommands = set(re.findall(r"\bpaibench ([a-z][a-z-]*)", command))
        if not subcommands:
            continue
        path = _env_path(rule)
        deps = set(_conda_deps(_load_env(path)))
        # paibench itself, with every dependency it declares (the post-deploy install does not resolve any).
        assert path.with_suffix(".post-deploy.sh").is_file(), f"{path}: nothing installs paibench"
        declared = {CONDA_NAME.get(name, name) for name, _, _ in _pyproject_deps()}
        assert declared <= deps, f"{path} lacks paibench's dependencies {sorted(declared - deps)}"
        for sub in subcommands:
            assert sub in NEEDS, f"rule {rule['name']} runs `paibench {sub}`: add what it imports to NEEDS"
            missing = NEEDS[sub] - deps
            assert not missing, f"rule {rule['name']} (`paibench {sub}`): {path.name} lacks {sorted(missing)}"


def test_env_files_use_conda_forge_only():
    for path in _rule_envs() + [PROJECT_ENV]:
        env = _load_env(path)
        assert env.get("channels") == CHANNELS, f"{path}: channels {env.get('channels')}, want {CHANNELS}"
        for dep in env["dependencies"]:
            if isinstance(dep, str):
                assert "::" not in dep, f"{path}: {dep!r} names a channel"
                assert not dep.startswith("-"), f"{path}: {dep!r}"
            else:
                assert set(dep) == {"pip"}, f"{path}: unexpected entry {dep!r}"
                pip_names = {_spec(d)[0] for d in dep["pip"]}
                # PyPI only for what conda-forge does not carry: never torch or its graph libraries.
                assert not pip_names & {"torch", "torch-geometric", "ogb", "paibench"}, f"{path}: pip {pip_names}"


def test_rule_envs_have_no_pip_section_and_a_post_deploy_script():
    # A pip: section runs in .snakemake/conda/ (relative paths miss the checkout) and cannot say --no-deps.
    assert _rule_envs(), f"no environment files in {ENVS}"
    for path in _rule_envs():
        env = _load_env(path)
        assert all(isinstance(dep, str) for dep in env["dependencies"]), f"{path}: has a pip: section"
        deps = _conda_deps(env)
        assert {"python", "pip", "setuptools"} <= set(deps), f"{path}: the post-deploy install needs python, pip, setuptools"
        script = path.with_suffix(".post-deploy.sh").read_text()
        assert re.search(r"pip install --no-deps --no-index --no-build-isolation --editable \"\$PAIBENCH_SOURCE\"", script)
        assert script.startswith("#!") and "set -euo pipefail" in script


def test_pins_agree_with_pyproject_and_the_whole_project_env():
    project = _conda_deps(_load_env(PROJECT_ENV))
    for path in _rule_envs():
        deps = _conda_deps(_load_env(path))
        for name, op, version in _pyproject_deps():
            conda = CONDA_NAME.get(name, name)
            assert conda in deps, f"{path}: lacks {conda} (pyproject: {name}{op}{version})"
            assert _spec(deps[conda])[1:] == (op, version), f"{path}: {deps[conda]!r} but pyproject.toml says {name}{op}{version}"
        for name, spec in deps.items():
            assert project.get(name) == spec, f"{PROJECT_ENV}: {project.get(name)!r}, {path.name}: {spec!r}"
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    assert any(_spec(r)[0] == "setuptools" for r in build)


def test_the_workflow_tells_the_post_deploy_script_where_the_checkout_is(parsed):
    assert parsed["paibench_source"] == str(REPO.resolve())
    assert (Path(parsed["paibench_source"]) / "pyproject.toml").is_file()


def test_post_deploy_script_installs_the_checkout_without_network(tmp_path):
    """Runs workflow/envs/*.post-deploy.sh as Snakemake does (a copy beside the environment, from another
    working directory, the environment's bin first on PATH) in a venv standing in for the conda environment:
    pip, setuptools and nothing else, so paibench must come from the checkout, editable, with no index."""
    source = copy_package_source(tmp_path / "checkout")
    # The build tools of the running interpreter, shared with the stand-in environment through a .pth file.
    tools = tmp_path / "tools"
    tools.mkdir()
    # Located, not imported (importing setuptools here would fight pytest's own distutils).
    for site in {Path(importlib.util.find_spec(name).origin).parents[1] for name in ("pip", "setuptools")}:
        for entry in site.iterdir():
            if entry.name.split("-")[0] in ("pip", "setuptools", "_distutils_hack") and not (tools / entry.name).exists():
                (tools / entry.name).symlink_to(entry)
    conda_dir = tmp_path / "work" / ".snakemake" / "conda"
    conda_dir.mkdir(parents=True)
    env_dir = conda_dir / "0123abcd"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    (next(env_dir.glob("lib/python3*/site-packages")) / "tools.pth").write_text(f"{tools}\n")
    for path in _rule_envs():
        script = conda_dir / f"0123abcd{path.stem}.post-deploy.sh"
        shutil.copy(path.with_suffix(".post-deploy.sh"), script)
        env = dict(os.environ, PAIBENCH_SOURCE=str(source), PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}",
                   PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(["bash", str(script)], cwd=tmp_path / "work", env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{script.name}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
        assert f"paibench {version}" in proc.stdout, proc.stdout[-2000:]
        where = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import paibench; print(paibench.__file__)"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
        assert where.stdout.strip() == str(source / "paibench" / "__init__.py"), where.stdout + where.stderr
        assert (env_dir / "bin" / "paibench").is_file()
    # Unset, the script stops with a message instead of installing something else.
    env = {k: v for k, v in os.environ.items() if k != "PAIBENCH_SOURCE"}
    proc = subprocess.run(["bash", str(_rule_envs()[0].with_suffix(".post-deploy.sh"))], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "PAIBENCH_SOURCE" in proc.stderr
