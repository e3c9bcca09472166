"""Config validation: one clear message naming the key, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from paibench.config import Grid, load_config_file
from paibench.errors import PaibenchError
from conftest import REPO, tiny_config


def test_default_config_is_valid_and_meets_the_minimum_grid():
    grid = Grid(load_config_file(REPO / "config" / "config.yaml"))
    pruned = [r for r in grid.runs if r.method != "dense"]
    assert len({r.method for r in pruned}) >= 2 and len({r.arch for r in grid.runs}) >= 2
    assert len({r.compression for r in pruned}) >= 4 and len({r.seed for r in grid.runs}) >= 2
    assert {grid.datasets[d].type for d in {r.dataset for r in grid.runs}} == {"digits", "sbm"}


def test_run_keys_and_paths():
    grid = Grid(tiny_config())
    keys = {r.key for r in grid.runs}
    assert "tiny/digits/vgg16_w0.125/erk/c100/s0" in keys
    assert "tiny/digits/vgg16_w0.125/dense/c1/s0" in keys  # dense runs once, at ratio 1
    assert len(keys) == len(grid.runs) == 5


def _bad(mutate):
    cfg = tiny_config()
    mutate(cfg)
    with pytest.raises(PaibenchError) as info:
        Grid(cfg)
    return str(info.value)


@pytest.mark.parametrize("mutate, needles", [
    (lambda c: c["experiments"]["tiny"]["methods"].append("magic"), ["methods[3]", "'magic'", "expected one of", "erk"]),
    (lambda c: c["experiments"]["tiny"].update(compressions=[0.5]), ["compressions[0]", "0.5"]),
    (lambda c: c["experiments"]["tiny"].update(seeds=[]), ["seeds", "non-empty list"]),
    (lambda c: c["experiments"]["tiny"].update(archs=[{"name": "gcn"}]), ["archs[0]", "'gcn'", "graph model", "vgg16"]),
    (lambda c: c["experiments"]["tiny"].update(datasets=["mnist"]), ["datasets[0]", "'mnist'", "digits"]),
    (lambda c: c.update(experiments={}), ["experiments", "at least one"]),
])
def test_bad_configs_name_key_value_and_allowed(mutate, needles):
    message = _bad(mutate)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_pack_mode_schema_enum_is_names_pack_modes_and_experiments_override_it():
    import yaml

    from paibench.config import SCHEMA_PATH
    from paibench.names import PACK_MODES

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert tuple(schema["$defs"]["pack_mode"]["enum"]) == PACK_MODES
    for where in (schema["properties"], schema["$defs"]["experiment"]["properties"]):
        assert where["pack_mode"]["$ref"] == "#/$defs/pack_mode"
    cfg = tiny_config()
    assert Grid(cfg).pack_mode == {"tiny": "auto"}
    cfg["pack_mode"] = "vmap"
    assert Grid(cfg).pack_mode == {"tiny": "vmap"}
    cfg["experiments"]["tiny"]["pack_mode"] = "loop"
    assert Grid(cfg).pack_mode == {"tiny": "loop"}


def test_every_train_option_has_a_row_in_the_config_reference():
    """config/README.md documents each training option with its default (a new option without a row fails)."""
    from paibench.training.recipe import TRAIN_OPTIONS

    text = (REPO / "config" / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2].strip().strip("`")
            for line in text.splitlines() if line.startswith("| `")}
    missing = [k for k in TRAIN_OPTIONS if k not in rows]
    assert not missing, f"config/README.md has no row for train option(s) {missing}"
    for key in ("epochs", "checkpoint_interval_s", "keep_checkpoint"):
        assert rows[key].lower() == str(TRAIN_OPTIONS[key].default).lower().removesuffix(".0"), key


def _sweep_grid() -> Grid:
    """12 level-0 masks (random, rpi) and 6 level-1 masks (mica reads rpi's), VGG-16 on CIFAR-10's shape."""
    return Grid({"experiments": {"x": {
        "datasets": ["cifar10"], "archs": ["vgg16"], "compressions": [10, 100, 1000], "seeds": [0, 1],
        "methods": ["random", {"name": "rpi", "budget": "erk"},
                    {"name": "mica", "label": "mica", "budget": "erk", "budget_from": "rpi_budget=erk"}]}}})


def test_mask_batches_cut_levels_by_count_and_cores():
    grid = _sweep_grid()
    todo = {r.mask for r in grid.runs}
    level = {"random": 0, "rpi_budget=erk": 0, "mica": 1}
    for size, parallel, sizes in ((25, 1, [12, 6]), (5, 1, [5, 5, 2, 5, 1]), (25, 2, [6, 6, 3, 3])):
        batches = grid.mask_batches(todo, size, parallel)
        assert [len(b) for b in batches] == sizes
        assert sorted(r.mask for b in batches for r in b) == sorted(todo)
        assert all(len({level[r.method] for r in b}) == 1 for b in batches)  # one level per batch
    # a mask made already gets no batch
    done = next(iter(todo))
    assert done not in {r.mask for b in grid.mask_batches(todo - {done}, 25) for r in b}


def test_mask_batches_end_before_their_estimated_work_passes_the_budget():
    grid = _sweep_grid()
    todo = {r.mask for r in grid.runs}
    work = {"random": 10.0, "rpi_budget=erk": 1.0, "mica": 100.0}  # seconds per mask of each method
    batches = grid.mask_batches(todo, 25, 1, work_s=lambda r: work[r.method], budget_s=25.0)
    assert sorted(r.mask for b in batches for r in b) == sorted(todo)
    for b in batches:
        cost = sum(work[r.method] for r in b)
        assert cost <= 25.0 or len(b) == 1, [(r.method, r.mask) for r in b]  # a mask over the budget goes alone
    assert sum(1 for b in batches if b[0].method.startswith("mica")) == 6
    # without an estimate, or with a budget they fit, the cut is by count alone
    assert [len(b) for b in grid.mask_batches(todo, 25, 1, work_s=lambda r: work[r.method], budget_s=1e9)] == [12, 6]


def test_mask_work_estimates_grow_with_rounds_batches_and_network():
    from paibench.estimate import WEIGHT_ROUND_S, WEIGHT_S, GridCosts

    grid = Grid({"experiments": {"x": {
        "datasets": ["cifar10", "cifar100"], "archs": ["vgg16", {"name": "vgg16", "width": 0.25}],
        "compressions": [10], "seeds": [0],
        "methods": ["random", "snip", "grasp", {"name": "grasp", "label": "grasp_i4", "num_iters": 4}, "synflow",
                    {"name": "force", "label": "force_t10", "T": 10, "num_batches": 1},
                    {"name": "force", "label": "force_t300", "T": 300, "num_batches": 1},
                    {"name": "force", "label": "force_pass", "T": 10, "num_batches": -1, "batching": "random"}]}}})
    c = GridCosts(grid)
    s = lambda m, a="vgg16", d="cifar10": c.mask_work_s(d, a, m)  # noqa: E731
    assert 0 < s("random") < s("snip") < s("grasp") < s("grasp_i4")
    assert s("random", "vgg16_w0.25") < s("random") and s("snip", "vgg16_w0.25") < s("snip")
    assert s("random") == pytest.approx(14.7e6 * (WEIGHT_S + WEIGHT_ROUND_S), rel=0.01)  # VGG-16: 14.7 M weights
    assert s("force_t10") < s("force_t300") and s("force_t10") < s("force_pass")  # a pass: 50,000 / 128 batches
    assert s("synflow") > 10 * s("random")  # 100 rounds of ranking all weights
    assert s("snip", d="cifar100") > s("snip")  # class-balanced batches: 10 images of each of 100 classes


def test_an_image_folder_is_estimated_once_its_prepared_file_exists(tmp_path, monkeypatch):
    import torch

    from paibench import paths
    from paibench.data.base import image_payload, save_prepared
    from paibench.estimate import GridCosts

    for split in ("train", "test"):
        (tmp_path / "imgs" / split).mkdir(parents=True)
    config = {"datasets": {"jpeg": {"type": "imagefolder", "path": "imgs"}},
              "experiments": {"x": {"datasets": ["jpeg"], "archs": ["vgg16"], "methods": ["snip"],
                                    "compressions": [10], "seeds": [0]}}}
    monkeypatch.chdir(tmp_path)
    assert GridCosts(Grid(config)).mask_work_s("jpeg", "vgg16", "snip") == 0.0  # shape unknown before preparing
    x = torch.zeros(20, 3, 32, 32, dtype=torch.uint8)
    y = torch.arange(20) % 10
    Path(paths.data("jpeg")).parent.mkdir(parents=True)
    save_prepared(image_payload("jpeg", x, y, x, y, [str(i) for i in range(10)], "test", {"crop_padding": 4, "flip": True}),
                  paths.data("jpeg"))
    costs = GridCosts(Grid(config))
    assert costs.info("jpeg").size == (32, 32) and costs.train_examples("jpeg") == 20
    cifar = Grid({"experiments": {"x": {"datasets": ["cifar10"], "archs": ["vgg16"], "methods": ["snip"],
                                        "compressions": [10], "seeds": [0]}}})
    assert costs.mask_work_s("jpeg", "vgg16", "snip") == pytest.approx(GridCosts(cifar).mask_work_s("cifar10", "vgg16", "snip"))
