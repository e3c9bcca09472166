"""The contract every registered pruning method keeps, checked for each entry of the registry: a new method
(one module plus one registry line) is covered here without editing this file.

Exact counts, byte-identical determinism, seeds that matter, option tables that parse and refuse, and the
command-line round trip. (Architectures: tests/test_models.py is parametrised over ARCHS the same way.)
"""

from __future__ import annotations

import json

import pytest

from paibench.cli import main
from paibench.errors import PaibenchError
from paibench.options import REQUIRED
from paibench.pruning import make_mask
from paibench.pruning.core import kept_for
from paibench.pruning.maskio import load_mask
from paibench.pruning.methods import METHODS

ARCH, WIDTH, DATASET = "resnet20", 0.25, "digits"  # small, with BatchNorm and shortcuts; 8x8 images
COMPRESSION = 8.0
INEXACT_TOLERANCE = 0.1  # methods with exact_count=False (d-regular layers) land within 10 % of the target


# Cheaper settings for options of these names, wherever a method has them (the contract does not depend on
# how many scoring rounds or sampled graphs a method spends).
FAST = {"T": 2, "rounds": 4, "samples": 2, "subsets": 10, "samples_per_class": 2}


def required_options(name: str) -> dict:
    """A value for every option the method requires (its first allowed choice), and the FAST settings."""
    out = {k: v for k, v in FAST.items() if k in METHODS.get(name).all_options}
    for key, opt in METHODS.get(name).all_options.items():
        if opt.default is REQUIRED:
            if not opt.choices:
                pytest.skip(f"{name}.{key} is required and has no listed choices to try")
            out[key] = opt.choices[0]
    return out


def _make(tmp_path, name, payload, seed=0, file="a"):
    spec = METHODS.get(name)
    out = tmp_path / f"{file}.safetensors"
    stats = make_mask(DATASET, ARCH, name, COMPRESSION if spec.prunes else 1.0, seed, str(out),
                      options=required_options(name), width=WIDTH, payload=payload)
    return out, stats


@pytest.mark.parametrize("name", METHODS.names())
def test_counts_determinism_and_seeds(tmp_path, digits_payload, name):
    spec = METHODS.get(name)
    a, stats = _make(tmp_path, name, digits_payload)
    b, again = _make(tmp_path, name, digits_payload, file="b")
    assert a.read_bytes() == b.read_bytes(), "same inputs must give a byte-identical mask file"
    total = stats["total"]
    if not spec.prunes:
        assert stats["kept"] == total
        return
    target = kept_for(total, COMPRESSION)
    if spec.exact_count:
        assert stats["kept"] == target, (stats["kept"], target)
    else:
        assert abs(stats["kept"] - target) <= INEXACT_TOLERANCE * target, (stats["kept"], target)
    other, _ = _make(tmp_path, name, digits_payload, seed=1, file="c")
    masks_a, _ = load_mask(a)
    masks_c, _ = load_mask(other)
    assert any(not bool((masks_a[k] == masks_c[k]).all()) for k in masks_a), "another seed must give another mask"


@pytest.mark.parametrize("name", METHODS.names())
def test_option_table_parses_describes_and_refuses(name):
    spec = METHODS.get(name)
    given = required_options(name)
    parsed = spec.parse_options(given)
    assert set(parsed) == set(spec.all_options)  # every option filled from its one declared default
    assert spec.with_defaults(given) == parsed
    for key, opt in spec.all_options.items():
        assert opt.help, f"{name}.{key} has no help text (paibench list shows it)"
        if opt.default is not REQUIRED:
            assert opt.parse(key, opt.default) == opt.default  # the default is an allowed value
    with pytest.raises(PaibenchError, match=r"^method\.no_such_option: .* expected one of the option keys "):
        spec.parse_options({**given, "no_such_option": 1})
    assert spec.description, f"{name} has no description for `paibench list`"


@pytest.mark.parametrize("name", METHODS.names())
def test_command_line_round_trip(tmp_path, digits_file, name, capsys):
    spec = METHODS.get(name)
    out = tmp_path / "m.safetensors"
    argv = ["mask", "--dataset", DATASET, "--arch", ARCH, "--width", str(WIDTH), "--method", name,
            "--compression", str(COMPRESSION if spec.prunes else 1), "--seed", "3", "--out", str(out)]
    argv += [x for k, v in required_options(name).items() for x in ("--opt", f"{k}={v}")]
    if spec.uses_data(spec.parse_options(required_options(name))):
        argv += ["--data", str(digits_file)]
    assert main(argv) == 0
    masks, meta = load_mask(out)
    assert (meta["method"], meta["dataset"], meta["arch"], meta["seed"]) == (name, DATASET, ARCH, "3")
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kept"] == sum(int(m.sum()) for m in masks.values())
    assert shown["macs_kept"] <= shown["macs"]
