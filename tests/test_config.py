"""Config validation: one clear message naming the key, the bad value and what is allowed."""

from __future__ import annotations

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
