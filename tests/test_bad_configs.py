"""A catalogue of invalid configs and command lines: each stops before any job with one clear line.

Every message must name the key (its path in the config, or the flag), the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import subprocess

import pytest

from conftest import BIN, run_snakemake, tiny_config
from paibench.cli import main
from paibench.config import Grid
from paibench.errors import PaibenchError
from paibench.pruning.methods import METHODS

MISSING = "/nonexistent/paibench-test-data"


def _exp(**kw) -> dict:
    cfg = tiny_config()
    cfg["experiments"]["tiny"].update(kw)
    return cfg


def _top(**kw) -> dict:
    cfg = tiny_config()
    cfg.update(kw)
    return cfg


def _train(**kw) -> dict:
    cfg = tiny_config()
    cfg["train"].update(kw)
    return cfg


def _without(key: str) -> dict:
    cfg = tiny_config()
    del cfg["experiments"]["tiny"][key]
    return cfg


def _dataset(label: str, spec: dict, arch="vgg16") -> dict:
    """A config whose experiment uses the dataset label `label` defined by `spec`."""
    cfg = _exp(datasets=[label], archs=[arch])
    cfg["datasets"] = {label: spec}
    return cfg


# (config, key the message must name, bad value the message must show, what the message must allow)
CASES = {
    "unknown-dataset": (_exp(datasets=["mnist"]), "experiments.tiny.datasets[0]", "'mnist'", "digits"),
    "unknown-pack-mode": (_top(pack_mode="fast"), "pack_mode", "'fast'", "vmap"),
    "unknown-experiment-pack-mode": (_exp(pack_mode="vectorised"), "experiments.tiny.pack_mode", "'vectorised'", "loop"),
    "unknown-arch": (_exp(archs=["vgg99"]), "experiments.tiny.archs[0]", "'vgg99'", "vgg16"),
    "unknown-arch-in-mapping": (_exp(archs=[{"name": "resnet9000"}]), "archs[0].name", "'resnet9000'", "resnet20"),
    "unknown-method": (_exp(methods=["snipp"]), "experiments.tiny.methods[0]", "'snipp'", "random"),
    "unknown-dataset-type": (_top(datasets={"mine": {"type": "mnist"}}), "datasets.mine.type", "'mnist'", "imagefolder"),
    "compression-below-1": (_exp(compressions=[0.5]), "compressions[0]", "0.5", "> 1"),
    "compression-equal-1": (_exp(compressions=[1]), "compressions[0]", "1", "> 1"),
    "compression-not-number": (_exp(compressions=["ten"]), "compressions[0]", "'ten'", "a number"),
    "seed-negative": (_exp(seeds=[-1]), "seeds[0]", "-1", ">= 0"),
    "seed-float": (_exp(seeds=[1.5]), "seeds[0]", "1.5", "an integer"),
    "seed-string": (_exp(seeds=["a"]), "seeds[0]", "'a'", "an integer"),
    "width-zero": (_exp(archs=[{"name": "vgg16", "width": 0}]), "archs[0].width", "0", "> 0"),
    "width-string": (_exp(archs=[{"name": "vgg16", "width": "half"}]), "archs[0].width", "'half'", "a number"),
    "empty-methods": (_exp(methods=[]), "experiments.tiny.methods", "[]", "non-empty"),
    "empty-seeds": (_exp(seeds=[]), "experiments.tiny.seeds", "[]", "non-empty"),
    "empty-datasets": (_exp(datasets=[]), "experiments.tiny.datasets", "[]", "non-empty"),
    "empty-compressions": (_exp(compressions=[]), "experiments.tiny.compressions", "[]", "non-empty"),
    "no-experiments": (_top(experiments={}), "experiments", "{}", "at least one"),
    "duplicate-seeds": (_exp(seeds=[0, 0]), "experiments.tiny.seeds", "[0, 0]", "once"),
    "duplicate-compressions": (_exp(compressions=[10, 10.0]), "experiments.tiny.compressions", "[10, 10.0]", "once"),
    "duplicate-compressions-6-digits": (_exp(compressions=[10, 10.0000001]), "compressions", "10.0000001", "distinct"),
    "duplicate-methods": (_exp(methods=["random", "erk", "random"]), "experiments.tiny.methods", "'random'", "once"),
    "duplicate-archs": (_exp(archs=["vgg16", {"name": "vgg16"}]), "experiments.tiny.archs", "'vgg16'", "once"),
    "duplicate-datasets": (_exp(datasets=["digits", "digits"]), "experiments.tiny.datasets", "'digits'", "once"),
    "graph-model-on-images": (_exp(archs=["gcn"]), "experiments.tiny.archs[0]", "'gcn'", "vgg16"),
    "image-model-on-graph": (_exp(datasets=["sbm"]), "experiments.tiny.archs[0]", "'vgg16'", "gcn"),
    "unknown-arch-option": (_exp(archs=[{"name": "vgg16", "depth": 3}]), "archs[0].depth", "3", "no options"),
    "bad-arch-option": (_exp(archs=[{"name": "resnet20", "skip": "maybe"}]), "archs[0].skip", "'maybe'", "boolean"),
    "unknown-method-option": (_exp(methods=[{"name": "erk", "powr": 2}]), "methods[0].powr", "2", "power"),
    "bad-method-option": (_exp(methods=[{"name": "erk", "power": "big"}]), "methods[0].power", "'big'", "a number"),
    "bad-compression-mode": (_exp(compression_mode="actual"), "compression_mode", "'actual'", "effective"),
    "unknown-experiment-key": (_exp(sedes=[0]), "experiments.tiny", "'sedes'", "seeds"),
    "missing-experiment-key": (_without("seeds"), "experiments.tiny", "'seeds'", "compressions"),
    "unknown-top-level-key": (_top(experimentz={}), "(top level)", "'experimentz'", "experiments"),
    "experiments-not-mapping": (_top(experiments=[1]), "experiments", "[1]", "a mapping"),
    "experiment-name-with-slash": (_top(experiments={"a/b": tiny_config()["experiments"]["tiny"]}),
                                   "experiments", "'a/b'", "no '/'"),
    "bad-label": (_exp(archs=[{"name": "vgg16", "label": "a b"}]), "archs[0].label", "'a b'", "letters"),
    "datasets-not-list": (_exp(datasets="digits"), "experiments.tiny.datasets", "'digits'", "a list"),
    "unknown-train-option": (_train(epoch=3), "train.epoch", "3", "epochs"),
    "train-epochs-zero": (_train(epochs=0), "train.epochs", "0", ">= 1"),
    "train-epochs-float": (_train(epochs=2.5), "train.epochs", "2.5", "an integer"),
    "train-lr-negative": (_train(lr=-1), "train.lr", "-1", ">= 0"),
    "train-lr-string": (_train(lr="fast"), "train.lr", "'fast'", "a number"),
    "train-optimizer": (_train(optimizer="rmsprop"), "train.optimizer", "'rmsprop'", "sgd"),
    "train-schedule": (_train(schedule="linear"), "train.schedule", "'linear'", "cosine"),
    "train-momentum": (_train(momentum=1.5), "train.momentum", "1.5", "<= 1"),
    "train-milestones-negative": (_train(milestones=[-1]), "train.milestones", "-1", "positive"),
    "train-milestones-string": (_train(milestones="half"), "train.milestones", "'half'", "a list"),
    "train-device": (_train(device="tpu"), "train.device", "'tpu'", "cuda"),
    "train-checkpoint-interval": (_train(checkpoint_interval_s=-5), "train.checkpoint_interval_s", "-5", ">= 0"),
    "experiment-train-option": (_exp(train={"batch_size": 0}), "experiments.tiny.train.batch_size", "0", ">= 1"),
    "dataset-option-range": (_dataset("digits", {"test_fraction": 2}), "datasets.digits.test_fraction", "2", "<= 0.5"),
    "dataset-unknown-option": (_dataset("digits", {"fraction": 0.1}), "datasets.digits.fraction", "0.1", "test_fraction"),
    "local-path-missing": (_dataset("mine", {"type": "imagefolder", "path": MISSING}), "datasets.mine.path",
                           repr(MISSING), "train/ and test/"),
    "imagefolder-without-path": (_dataset("mine", {"type": "imagefolder"}), "datasets.mine.path", "missing",
                                 "train/ and test/"),
    "planetoid-root-missing": (_dataset("cora", {"root": MISSING}, arch="gcn"), "datasets.cora.root",
                               repr(MISSING), "Cora/raw"),
    "resources-threads": (_top(resources={"train_threads": 0}), "resources.train_threads", "0", ">= 1"),
    "resources-unknown": (_top(resources={"gpus": 1}), "resources", "'gpus'", "train_threads"),
    "mica-without-budget": (_exp(methods=[{"name": "mica"}]), "methods[0]", "", ""),  # filled in below
}


def _expectation(case: str):
    config, key, value, allowed = CASES[case]
    if case == "mica-without-budget":
        if "mica" in METHODS:  # the required option is missing: the message names it
            return config, "methods[0].budget", "missing", "required"
        return config, "methods[0].name", "'mica'", "random"  # not registered in this checkout
    return config, key, value, allowed


def _assert_clear(message: str, key: str, value: str, allowed: str) -> None:
    assert "\n" not in message.strip(), message
    assert "Traceback" not in message
    assert key in message, f"key {key!r} not named in: {message}"
    assert value in message, f"value {value!r} not shown in: {message}"
    assert allowed in message, f"allowed {allowed!r} not said in: {message}"
    assert "expected" in message or "required" in message


def test_catalogue_is_large():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", sorted(CASES))
def test_grid_rejects(case):
    config, key, value, allowed = _expectation(case)
    with pytest.raises(PaibenchError) as info:
        Grid(copy.deepcopy(config))
    _assert_clear(str(info.value), key, value, allowed)


def test_valid_tiny_config_is_accepted():
    grid = Grid(tiny_config())
    assert len(grid.runs) == 5  # dense once + 2 methods x 2 compressions


def test_mica_with_budget_is_accepted():
    if "mica" not in METHODS:
        pytest.skip("method 'mica' is not registered in this checkout")
    grid = Grid(_exp(methods=[{"name": "mica", "budget": "erk"}]))
    assert {run.method for run in grid.runs} == {next(iter(grid.methods))}


def test_check_config_cli_prints_one_line(tmp_path, capsys):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_exp(seeds=[-1])))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "seeds[0]" in err and "-1" in err and ">= 0" in err


def test_invalid_yaml_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("experiments: [unclosed\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not valid YAML" in err and str(path) in err and "Traceback" not in err


# ----------------------------------------------------------------------------------------- command line
MASK = ["mask", "--dataset", "digits", "--arch", "resnet20", "--method", "random", "--compression", "10",
        "--seed", "0"]

CLI_CASES = {
    "method": (["--method", "snipp"], "--method", "'snipp'", "random"),
    "arch": (["--arch", "vgg99"], "--arch", "'vgg99'", "vgg16"),
    "dataset": (["--dataset", "mnist"], "--dataset", "'mnist'", "digits"),
    "compression-text": (["--compression", "abc"], "--compression", "'abc'", "ratio"),
    "compression-below-1": (["--compression", "0.5"], "--compression", "'0.5'", "ratio >= 1"),
    "seed-negative": (["--seed", "-1"], "--seed", "'-1'", ">= 0"),
    "seed-text": (["--seed", "x"], "--seed", "'x'", "integer"),
    "width-zero": (["--width", "0"], "--width", "'0'", "> 0"),
    "width-text": (["--width", "wide"], "--width", "'wide'", "number"),
    "opt-without-equals": (["--method", "erk", "--opt", "power"], "--opt", "'power'", "key=value"),
    "opt-unknown-key": (["--method", "erk", "--opt", "powr=2"], "--opt.powr", "'2'", "power"),
    "opt-bad-value": (["--method", "erk", "--opt", "power=big"], "--opt.power", "'big'", "a number"),
    "arch-opt-unknown": (["--arch-opt", "depth=3"], "--arch-opt.depth", "'3'", "skip"),
    "arch-opt-bad-value": (["--arch-opt", "skip=maybe"], "--arch-opt.skip", "'maybe'", "boolean"),
}


def _last_flag_wins(extra: list[str]) -> list[str]:
    args = list(MASK)
    for i in range(0, len(extra), 2):
        if extra[i] in args and extra[i] not in ("--opt", "--arch-opt"):
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i : i + 2]
    return args


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_mask_rejects(case, tmp_path, capsys):
    extra, key, value, allowed = CLI_CASES[case]
    out = tmp_path / "m.safetensors"
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(_last_flag_wins(extra) + ["--out", str(out)]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no message on stderr"
    # argparse prints its usage first; the error itself is the one last line.
    last = err[-1]
    assert last.startswith("paibench mask: error:"), last
    _assert_clear(last, key, value, allowed)
    assert not out.exists()


@pytest.mark.workflow
def test_cli_exit_code_in_a_real_process(tmp_path):
    proc = subprocess.run([str(BIN / "paibench"), *_last_flag_wins(["--method", "snipp"]), "--out",
                           str(tmp_path / "m.safetensors")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--method" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------- real snakemake -n
# Every case is checked in-process (test_grid_rejects); one Snakemake run proves the workflow shows the same line.
SNAKEMAKE_CASES = ["graph-model-on-images"]


@pytest.mark.workflow
@pytest.mark.parametrize("case", SNAKEMAKE_CASES)
def test_snakemake_stops_before_any_job(case, tmp_path):
    config, key, value, allowed = _expectation(case)
    proc = run_snakemake(tmp_path / "wd", copy.deepcopy(config), "-n", check=False, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("paibench:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    _assert_clear(lines[0], key, value, allowed)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Job stats" not in proc.stdout + proc.stderr and "rule " not in proc.stdout + proc.stderr
    assert not (tmp_path / "wd" / "results").exists() and not (tmp_path / "wd" / "resources").exists()
