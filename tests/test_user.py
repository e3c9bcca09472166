"""paibench as a researcher uses it: their own config, direct commands, the Python API, readable outputs."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
import torch

from conftest import REPO, planned_jobs, run_snakemake, tiny_config
from paibench.cli import main


@pytest.mark.workflow
def test_own_configfile_describes_the_whole_grid(tmp_path):
    """`--configfile my.yaml` is the grid: the default experiments (config/config.yaml) are not merged in."""
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    config = tiny_config()
    jobs = planned_jobs(run_snakemake(tmp_path, config, "-n", "--quiet", "rules"))
    tiny = config["experiments"]["tiny"]
    runs = len(tiny["seeds"]) * (1 + (len(tiny["methods"]) - 1) * len(tiny["compressions"]))
    assert jobs.get("train") == runs and jobs.get("prepare_data") == 1  # digits only: no sbm, no default runs


def _train(tmp_path, digits_file, mask, out_dir):
    code = main(["train", "--data", str(digits_file), "--mask", str(mask), "--out-dir", str(out_dir),
                 "--dataset", "digits", "--arch", "vgg16", "--width", "0.125", "--train-config",
                 '{"epochs": 2, "batch_size": 64}'])
    assert code == 0
    return json.loads((out_dir / "metrics.json").read_text())


def test_direct_training_randomness_follows_the_run_not_its_output_path(tmp_path, digits_file):
    mask = tmp_path / "m.safetensors"
    assert main(["mask", "--dataset", "digits", "--arch", "vgg16", "--width", "0.125", "--method", "random",
                 "--compression", "10", "--seed", "0", "--out", str(mask)]) == 0
    a = _train(tmp_path, digits_file, mask, tmp_path / "run")
    b = _train(tmp_path, digits_file, mask, tmp_path / "x" / "run")
    assert a["run_key"] == b["run_key"] and a["run_key"].startswith("direct/")
    assert (a["accuracy"], a["final_train_loss"]) == (b["accuracy"], b["final_train_loss"])


def test_outputs_respect_the_umask(tmp_path):
    from paibench.utils import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644  # group and others can read


def test_python_api_in_a_plain_training_loop():
    import paibench

    model = paibench.build_model("vgg16", "digits", width=0.125, seed=0)
    masks = paibench.make_mask("digits", "vgg16", "erk", compression=100, seed=0, width=0.125)
    paibench.apply_mask(model, masks)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for name, mask in masks.items():
        module, _, attr = name.rpartition(".")
        weight = getattr(model.get_submodule(module), attr)
        assert not bool(weight[~mask].any()), name  # pruned weights stay exactly zero
        assert bool(weight[mask].any()), name
    # the same initial weights make_mask pruned: build_model(seed) is the run's network
    again = paibench.build_model("vgg16", "digits", width=0.125, seed=0)
    first = next(iter(masks))
    assert torch.equal(paibench.build_model("vgg16", "digits", width=0.125, seed=0).state_dict()[first],
                       again.state_dict()[first])


def test_apply_mask_of_another_width_is_one_clear_error():
    import paibench
    from paibench.errors import PaibenchError

    masks = paibench.make_mask("digits", "vgg16", "random", compression=10, seed=0, width=0.25)
    with pytest.raises(PaibenchError, match="expected a mask made for this width"):
        paibench.apply_mask(paibench.build_model("vgg16", "digits", width=0.125), masks)


def test_version_and_help_text(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("paibench ")
    from paibench.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"paibench {name} {action.option_strings or action.dest}: no help text"


def test_paper_tables_are_plain_csv_with_the_budget_beside_them(tmp_path):
    import pandas as pd

    metrics = sorted((REPO / "results" / "runs").glob("digits/**/metrics.json"))
    assert main(["tables", *map(str, metrics), "--paper", "mica=digits", "--out-dir", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "mica.csv")
    assert {"method", "accuracy_mean_pct", "compression"} <= set(table.columns)
    side = json.loads((tmp_path / "mica.json").read_text())
    assert side["budget"].startswith("budget: ") and side["experiments"] == ["digits"]
    assert side["budget"] in (tmp_path / "mica.md").read_text()  # the Markdown states it too


def test_committed_results_carry_no_absolute_path_of_the_machine_that_made_them():
    import re
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "results"], cwd=REPO,
                             capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    absolute = re.compile(r"(?<![\w.])/(?:work|home|root|tmp|Users|scratch)/")
    for rel in tracked:
        path = REPO / rel
        if path.suffix in (".json", ".md", ".csv", ".yaml", ".tex", ".txt") and path.is_file():
            text = path.read_text(errors="replace")
            assert not absolute.search(text), f"{rel}: {absolute.search(text).group(0)}..."
            if path.name == "metrics.json":
                command = json.loads(text).get("command", "paibench")
                assert command.startswith("paibench "), f"{rel}: command {command[:40]!r}"
