"""Fast unit tests of the pipeline's core: counts, determinism, effective weights, loaders, training, CLI."""

from __future__ import annotations

import json
import math
import tarfile

import numpy as np
import pytest
import torch

from paibench.cli import main as cli
from paibench.data import DATASETS, info_from_payload
from paibench.models import build_model, prunable_parameters
from paibench.pruning import make_mask
from paibench.pruning.core import allocate, kept_for
from paibench.pruning.maskio import load_mask, stats_path
from paibench.pruning.methods.basic import erk_densities
from paibench.pruning.stats import mask_statistics
from paibench.data.base import DatasetInfo

CIFAR = DatasetInfo("cifar10", "image", 10, channels=3, size=(32, 32))


def test_allocate_is_exact_and_capped():
    numels = {"a": 10, "b": 1000, "c": 50}
    counts = allocate(numels, {"a": 100.0, "b": 1.0, "c": 3.0}, 300)
    assert sum(counts.values()) == 300
    assert counts["a"] == 10  # would exceed its size: dense, rest re-spread
    assert all(counts[n] <= numels[n] for n in numels)


@pytest.mark.parametrize("method", ["random", "erk"])
@pytest.mark.parametrize("ratio", [3, 10, 100, 1000])
def test_count_methods_keep_exactly_the_target(tmp_path, method, ratio):
    stats = make_mask("cifar10", "vgg16", method, ratio, 0, str(tmp_path / "m.safetensors"), width=0.25)
    assert stats["kept"] == kept_for(stats["total"], ratio)
    masks, meta = load_mask(tmp_path / "m.safetensors")
    assert sum(int(m.sum()) for m in masks.values()) == stats["kept"]
    assert meta["method"] == method and meta["compression"] == f"{ratio:g}"


def test_only_conv_and_linear_weights_are_masked(tmp_path):
    make_mask("cifar10", "resnet20", "erk", 10, 0, str(tmp_path / "m.safetensors"))
    masks, _ = load_mask(tmp_path / "m.safetensors")
    model = build_model("resnet20", CIFAR)
    assert set(masks) == set(prunable_parameters(model))
    assert all(name.endswith(".weight") for name in masks)
    norms = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert not norms & set(masks)
    assert all(m.dtype == torch.bool for m in masks.values())


def test_random_layers_have_uniform_density(tmp_path):
    stats = make_mask("cifar10", "vgg16", "random", 20, 0, str(tmp_path / "m.safetensors"), width=0.25)
    dens = [layer["density"] for layer in stats["layers"]]
    assert max(dens) - min(dens) < 0.02  # exact up to rounding to whole weights


def test_erk_densities_redistribute_and_respect_target():
    shapes = {"conv1": torch.Size([16, 3, 3, 3]), "conv2": torch.Size([64, 16, 3, 3]), "fc": torch.Size([10, 64])}
    dens = erk_densities(shapes, 0.3)
    assert all(0 < d <= 1 for d in dens.values())
    assert dens["conv1"] == 1.0  # the small first layer would exceed 1, so it is made dense
    kept = sum(dens[n] * math.prod(s) for n, s in shapes.items())
    total = sum(math.prod(s) for s in shapes.values())
    assert kept == pytest.approx(0.3 * total)


def test_same_inputs_give_byte_identical_masks_and_seeds_differ(tmp_path):
    a, b, c = (tmp_path / f"{x}.safetensors" for x in "abc")
    make_mask("cifar10", "vgg16", "erk", 100, 3, str(a), width=0.25)
    torch.manual_seed(12345)  # global RNG state must not matter
    np.random.seed(7)
    make_mask("cifar10", "vgg16", "erk", 100, 3, str(b), width=0.25)
    make_mask("cifar10", "vgg16", "erk", 100, 4, str(c), width=0.25)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_statistics_json_records_hash_and_layers(tmp_path):
    from paibench.utils import sha256_file

    out = tmp_path / "m.safetensors"
    stats = make_mask("cifar10", "resnet20", "random", 50, 0, str(out))
    on_disk = json.loads(stats_path(out).read_text())
    assert on_disk["sha256"] == sha256_file(out)
    assert sum(layer["kept"] for layer in on_disk["layers"]) == on_disk["kept"]
    assert on_disk["effective_kept"] <= on_disk["kept"]


def test_dense_effective_weights_depend_on_spatial_reach():
    model = build_model("vgg16", CIFAR, 0.125)
    dense = {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    stats = mask_statistics(model, dense, CIFAR)
    # On 32x32 inputs the last block runs on 2x2 maps, where every 3x3 tap still sees data.
    assert stats["effective_kept"] == stats["total"] and not stats["collapsed"]
    small = DatasetInfo("digits", "image", 10, channels=1, size=(8, 8))
    model = build_model("vgg16", small, 0.125)
    dense = {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    stats = mask_statistics(model, dense, small)
    last = [layer for layer in stats["layers"] if layer["name"].startswith("features")][-1]
    # 8x8 input pools to 1x1: only the centre tap of the last convs ever sees data (1/9 of the kernel).
    assert last["effective_kept"] * 9 == last["numel"]


def test_cutting_the_first_layer_collapses_the_network():
    model = build_model("vgg16", CIFAR, 0.125)
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    first = next(iter(masks))
    masks[first] = torch.zeros_like(masks[first])
    stats = mask_statistics(model, masks, CIFAR)
    assert stats["collapsed"] and stats["effective_kept"] == 0


def test_digits_and_sbm_loaders(digits_payload):
    info = info_from_payload(digits_payload)
    assert (info.channels, info.size, info.num_classes) == (1, (8, 8), 10)
    assert len(digits_payload["y_train"]) + len(digits_payload["y_test"]) == 1797
    assert digits_payload["x_train"].dtype == torch.uint8 and int(digits_payload["x_train"].max()) == 255
    spec = DATASETS.get("sbm")
    g = spec.prepare(spec.parse_options({"nodes": 100, "classes": 4}), None)
    assert g["x"].shape == (100, 32) and g["edge_index"].shape[0] == 2
    assert not (g["train_mask"] & g["test_mask"]).any()
    assert int(g["train_mask"].sum() + g["val_mask"].sum() + g["test_mask"].sum()) == 100
    again = spec.prepare(spec.parse_options({"nodes": 100, "classes": 4}), None)
    assert torch.equal(g["edge_index"], again["edge_index"])  # seeded


def _write_images(root, split, classes, per_class, size=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_imagefolder_from_folders_and_tar(tmp_path):
    spec = DATASETS.get("imagefolder")
    root = tmp_path / "set"
    _write_images(root, "train", ["b", "a"], 3)
    _write_images(root, "test", ["b", "a"], 2)
    payload = spec.prepare(spec.parse_options({"path": str(root)}), tmp_path)
    assert payload["x_train"].shape == (6, 3, 6, 6) and payload["classes"] == ["a", "b"]
    archived = tmp_path / "archived"
    archived.mkdir()
    for split in ("train", "test"):
        with tarfile.open(archived / f"{split}.tar.xz", "w:xz") as tar:
            tar.add(root / split, arcname=split)
    from_tar = spec.prepare(spec.parse_options({"path": str(archived)}), tmp_path)
    assert torch.equal(from_tar["x_train"], payload["x_train"]) and torch.equal(from_tar["y_test"], payload["y_test"])


def test_training_keeps_pruned_weights_exactly_zero(tmp_path, digits_file):
    from paibench.training import MaskEnforcer, RunSpec, parse_train_config, train_run
    from safetensors.torch import load_file

    mask = tmp_path / "m.safetensors"
    make_mask("digits", "vgg16", "random", 20, 0, str(mask), width=0.125)
    cfg = parse_train_config({"epochs": 1, "batch_size": 256, "lr": 0.1, "weight_decay": 5e-3, "keep_checkpoint": True})
    spec = RunSpec(data=str(digits_file), mask=str(mask), out_dir=str(tmp_path / "run"),
                   checkpoint=str(tmp_path / "ck.pt"), run_key="t", train=cfg, dataset="digits",
                   arch="vgg16", width=0.125, arch_options={}, seed=0)
    metrics = train_run(spec, log=lambda *_: None)
    assert metrics["status"] == "ok" and metrics["kept"] == json.loads(stats_path(mask).read_text())["kept"]
    masks, _ = load_mask(mask)
    weights = load_file(tmp_path / "run" / "model.safetensors")
    for name, m in masks.items():
        assert torch.count_nonzero(weights[name][~m]) == 0
        assert torch.count_nonzero(weights[name][m]) > 0  # kept weights did train
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    names = list(build_model("vgg16", DatasetInfo("digits", "image", 10, 1, (8, 8)), 0.125).state_dict())
    assert state["epoch"] == 1 and set(state["model"]) == set(names)
    # Momentum buffers of pruned weights stay zero, so weight decay/momentum never revive them.
    model = build_model("vgg16", DatasetInfo("digits", "image", 10, 1, (8, 8)), 0.125)
    opt_params = list(model.parameters())
    name_of = {id(p): n for n, p in model.named_parameters()}
    decay_group = [p for p in opt_params if p.dim() > 1]
    buffers = state["optimizer"]["state"]
    for idx, p in enumerate(decay_group):
        name = name_of[id(p)]
        if name in masks and idx in buffers:
            assert torch.count_nonzero(buffers[idx]["momentum_buffer"][~masks[name]]) == 0
    assert MaskEnforcer  # imported API used by the engine


def test_cli_mask_and_inspect_round_trip(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert cli(["mask", "--dataset", "cifar10", "--arch", "resnet20", "--method", "erk", "--compression", "1e2",
                "--seed", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli(["inspect", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    for key in ("total", "kept", "nominal_compression", "effective_kept", "effective_compression", "collapsed", "layers"):
        assert key in shown
    assert shown["nominal_compression"] == pytest.approx(100, rel=1e-3)
    assert {"name", "numel", "kept", "effective_kept"} <= set(shown["layers"][0])
    assert cli(["inspect", str(out), "--json", "--recompute"]) == 0
    recomputed = json.loads(capsys.readouterr().out)
    assert recomputed["effective_kept"] == shown["effective_kept"]


def test_cli_mask_batch_writes_the_masks_of_solo_commands(tmp_path, digits_file, capsys):
    """mask-batch: each job is the arguments of `paibench mask`; the files are byte for byte a solo command's."""
    jobs = [f"--dataset digits --arch vgg16 --width 0.125 --method {m} --compression {c} --seed {s} --data {digits_file}"
            for m, c, s in (("random", 10, 0), ("erk", 30, 1), ("snip", 10, 0))]
    (tmp_path / "jobs.txt").write_text("".join(f"{j} --out {tmp_path}/batch/{i}.safetensors\n"
                                               for i, j in enumerate(jobs[1:], 1)))
    assert cli(["mask-batch", "--job", f"{jobs[0]} --out {tmp_path}/batch/0.safetensors",
                "--jobs-file", str(tmp_path / "jobs.txt")]) == 0
    assert "3 masks in" in capsys.readouterr().out
    for i, job in enumerate(jobs):
        assert cli(["mask", *job.split(), "--out", str(tmp_path / f"solo{i}.safetensors")]) == 0
        assert (tmp_path / "batch" / f"{i}.safetensors").read_bytes() == (tmp_path / f"solo{i}.safetensors").read_bytes()
        assert json.loads((tmp_path / "batch" / f"{i}.json").read_text())["kept"] == \
            json.loads((tmp_path / f"solo{i}.json").read_text())["kept"]


@pytest.mark.parametrize("argv, needle", [
    (["--method", "nope"], "method: 'nope' is not allowed; expected one of"),
    (["--arch", "nope"], "arch: 'nope' is not allowed"),
    (["--opt", "power"], "--opt: 'power' is not allowed; expected key=value"),
    (["--opt", "colour=red"], "--opt.colour"),
])
def test_cli_bad_arguments_give_one_clear_line(tmp_path, capsys, argv, needle):
    base = {"--dataset": "cifar10", "--arch": "vgg16", "--method": "erk", "--compression": "10", "--seed": "0",
            "--out": str(tmp_path / "m.safetensors")}
    base.update(dict(zip(argv[::2], argv[1::2])))
    code = cli(["mask", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
