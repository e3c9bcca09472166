"""Engine properties: the mask holds exactly under every optimizer, with momentum and weight decay."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from paibench.pruning import make_mask
from paibench.pruning.maskio import load_mask
from paibench.training import RunSpec, parse_train_config, resolve_threads, train_run


@pytest.mark.parametrize("optimizer, extra", [
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("adam", {"lr": 0.01}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.05}),
])
def test_pruned_weights_and_optimizer_state_stay_exactly_zero(tmp_path, digits_file, optimizer, extra):
    mask = tmp_path / "m.safetensors"
    make_mask("digits", "resnet20", "random", 10, 0, str(mask), width=0.25)
    cfg = parse_train_config({"epochs": 1, "batch_size": 256, "lr": 0.1, "weight_decay": 5e-3,
                              "optimizer": optimizer, "keep_checkpoint": True, **extra})
    spec = RunSpec(data=str(digits_file), mask=str(mask), out_dir=str(tmp_path / "run"),
                   checkpoint=str(tmp_path / "ck.pt"), run_key="t", train=cfg, dataset="digits",
                   arch="resnet20", width=0.25, arch_options={}, seed=0, threads=1)
    assert train_run(spec, log=lambda *_: None)["status"] == "ok"
    masks, _ = load_mask(mask)
    weights = load_file(tmp_path / "run" / "model.safetensors")
    for name, m in masks.items():
        assert torch.count_nonzero(weights[name][~m]) == 0
        assert torch.count_nonzero(weights[name][m]) > 0
    # Only the gradient is masked per step; the optimizer state of pruned entries must never move either.
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    # State indices follow the optimizer's groups: weight matrices/kernels first, in parameter order.
    names = [n for n, w in weights.items() if w.dim() > 1 and not n.endswith(("running_mean", "running_var"))]
    model_order = [n for n in state["model"] if n in names]
    checked = 0
    for idx, name in enumerate(model_order):
        entry = state["optimizer"]["state"].get(idx, {})
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            if key in entry and name in masks:
                checked += 1
                assert torch.count_nonzero(entry[key][~masks[name]]) == 0, (name, key)
    assert checked > 0


def test_threads_zero_means_omp_num_threads_else_all_cores(monkeypatch):
    import os

    assert resolve_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert resolve_threads(0) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert resolve_threads(0) == len(os.sched_getaffinity(0))


def test_training_restores_the_callers_thread_count(digits_file, tmp_path):
    from paibench.pruning import make_mask

    make_mask("digits", "resnet20", "random", 10, 0, str(tmp_path / "m.safetensors"), width=0.25)
    before = torch.get_num_threads()
    spec = RunSpec(data=str(digits_file), mask=str(tmp_path / "m.safetensors"), out_dir=str(tmp_path / "run"),
                   checkpoint=str(tmp_path / "ck.pt"), run_key="t", train=parse_train_config({"epochs": 1}),
                   dataset="digits", arch="resnet20", width=0.25, arch_options={}, seed=0, threads=before + 1)
    train_run(spec, log=lambda msg: None)
    assert torch.get_num_threads() == before


def test_validation_split_is_stratified_fixed_and_disjoint():
    from paibench.tasks.image import validation_indices

    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 21)[torch.randperm(101, generator=torch.Generator().manual_seed(3))]
    held = validation_indices(labels, 0.2)
    assert torch.equal(held, validation_indices(labels, 0.2))  # same data -> same split, whatever the run
    assert torch.equal(held, torch.unique(held))  # sorted, no repeats
    counts = torch.bincount(labels[held], minlength=3).tolist()
    assert counts == [10, 6, 4]  # round(0.2 * n_c) of every class
    other = validation_indices(labels, 0.1)
    assert torch.bincount(labels[other], minlength=3).tolist() == [5, 3, 2]


def _val_run(tmp_path, digits_file, name, **train):
    mask = tmp_path / "m.safetensors"
    if not mask.exists():
        make_mask("digits", "vgg16", "random", 10, 0, str(mask), width=0.125)
    cfg = parse_train_config({"epochs": 3, "batch_size": 128, "lr": 0.05, **train})
    spec = RunSpec(data=str(digits_file), mask=str(mask), out_dir=str(tmp_path / name),
                   checkpoint=str(tmp_path / f"{name}.pt"), run_key=name, train=cfg, dataset="digits",
                   arch="vgg16", width=0.125, arch_options={}, seed=0, threads=1)
    lines = []
    metrics = train_run(spec, log=lines.append)
    import csv

    rows = list(csv.DictReader((tmp_path / name / "epochs.csv").open()))
    return metrics, rows


def test_val_fraction_holds_out_images_and_selects_best_on_validation(tmp_path, digits_file):
    metrics, rows = _val_run(tmp_path, digits_file, "val", val_fraction=0.25, report="best")
    assert all(r["val_acc"] != "" for r in rows)
    best = max(rows, key=lambda r: (float(r["val_acc"]), -int(r["epoch"])))
    assert metrics["report"] == "best-val"
    assert metrics["best_epoch"] == int(best["epoch"])
    assert metrics["accuracy"] == pytest.approx(float(best["test_acc"]))
    # without a split: no validation column, and 'best' is the best test epoch
    plain, plain_rows = _val_run(tmp_path, digits_file, "plain", report="best")
    assert "val_acc" not in plain_rows[0] and plain["report"] == "best"
    assert plain["accuracy"] == pytest.approx(max(float(r["test_acc"]) for r in plain_rows))


def test_decay_scope_all_decays_biases_and_norm_parameters(tmp_path):
    from torch import nn

    from paibench.training.recipe import model_optimizer as _optimizer

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    for scope, undecayed in (("weights", 4), ("all", 0)):  # conv bias, BN weight and bias, linear bias
        opt = _optimizer(parse_train_config({"decay_scope": scope, "weight_decay": 0.1}), model, torch.device("cpu"))
        assert sum(len(g["params"]) for g in opt.param_groups if g["weight_decay"] == 0.0) == undecayed
        assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize("given", [{"skip": "true"}, {"skip": True}, {}, None])
def test_training_starts_from_the_initial_weights_the_mask_was_computed_on(tmp_path, digits_file, given):
    """Arch options as the command line gives them (strings), typed, or left to their defaults: the run's
    initial weights come from the same seed as the mask's model (its statistics record it)."""
    import json as _json

    from paibench.data import load_prepared
    from paibench.tasks import task_for
    from paibench.training.run import RunState

    mask = tmp_path / "m.safetensors"
    make_mask("digits", "resnet20", "snip", 10, 3, str(mask), width=0.25, arch_options={"skip": True},
              payload=load_prepared(digits_file))
    spec = RunSpec(data=str(digits_file), mask=str(mask), out_dir=str(tmp_path / "run"), checkpoint=str(tmp_path / "ck"),
                   run_key="t", train=parse_train_config({"epochs": 1}), dataset="digits",
                   arch="" if given is None else "resnet20", width=0.25, arch_options=given, seed=3, threads=1)
    payload = load_prepared(digits_file)
    task = task_for(payload["kind"])
    run = RunState(spec, torch.device("cpu"), payload, task.load(payload, torch.device("cpu"), spec.train), task, lambda m: None)
    assert run.init_seed == _json.loads(mask.with_suffix(".json").read_text())["init_seed"]
    assert run.arch_options == {"skip": True}


def test_sparse_feature_product_trains_the_same_run_as_the_dense_one(tmp_path):
    """A graph run with bag-of-words features trained with `feature_product: sparse` follows the dense run up to
    float summation order (same training losses), and auto picks the sparse product for such features."""
    from paibench.data import DATASETS, save_prepared

    spec = DATASETS.get("sbm")
    payload = spec.prepare(spec.parse_options({"nodes": 200, "classes": 4}), None)
    gen = torch.Generator().manual_seed(0)
    payload["x"] = payload["x"] * (torch.rand(payload["x"].shape, generator=gen) < 0.05)  # ~5 % nonzero
    data = tmp_path / "g.pt"
    save_prepared(payload, data)
    mask = tmp_path / "m.safetensors"
    make_mask("sbm", "gcn", "erk", 10, 0, str(mask), arch_options={"hidden": 32}, payload=payload)
    losses, logs = {}, {}
    for mode in ("dense", "sparse", "auto"):
        cfg = parse_train_config({"epochs": 3, "optimizer": "adam", "lr": 0.01, "schedule": "constant",
                                  "device": "cpu", "feature_product": mode})
        run = RunSpec(data=str(data), mask=str(mask), out_dir=str(tmp_path / mode), checkpoint=str(tmp_path / f"{mode}.pt"),
                      run_key="t", train=cfg, dataset="sbm", arch="gcn", width=1.0, arch_options={"hidden": 32},
                      seed=0, threads=1)
        lines = []
        assert train_run(run, log=lines.append)["status"] == "ok"
        logs[mode] = "\n".join(lines)
        rows = (tmp_path / mode / "epochs.csv").read_text().splitlines()[1:]
        losses[mode] = [float(r.split(",")[2]) for r in rows]
    assert losses["dense"] == pytest.approx(losses["sparse"], rel=1e-5)
    assert losses["auto"] == losses["sparse"]
    assert "sparse product" in logs["sparse"] and "sparse product" not in logs["dense"]


def test_graph_splits_select_by_index_exactly_as_by_boolean_mask():
    """GraphData keeps each split's node indices: the training step's loss and gradient, and evaluation, equal
    those of boolean-mask selection bitwise (same rows, same order), without a nonzero() per use."""
    from paibench.tasks.node import NODE_CLASSIFICATION, GraphData, evaluate_graph

    gen = torch.Generator().manual_seed(0)
    n, classes = 50, 4
    payload = {"x": torch.randn(n, 8, generator=gen), "y": torch.randint(0, classes, (n,), generator=gen),
               "edge_index": torch.randint(0, n, (2, 120), generator=gen),
               **{f"{k}_mask": torch.rand(n, generator=gen) < p for k, p in (("train", 0.5), ("val", 0.3), ("test", 0.4))}}
    data = GraphData(payload, torch.device("cpu"))
    logits = torch.randn(n, classes, generator=gen, requires_grad=True)
    (_, _), targets, select = NODE_CLASSIFICATION.batch(data, None, 0, 0, None)
    by_index = torch.nn.functional.cross_entropy(logits[select], targets)
    (grad_index,) = torch.autograd.grad(by_index, logits)
    m = payload["train_mask"]
    by_mask = torch.nn.functional.cross_entropy(logits[m], payload["y"][m])
    (grad_mask,) = torch.autograd.grad(by_mask, logits)
    assert torch.equal(by_index, by_mask) and torch.equal(grad_index, grad_mask)
    assert NODE_CLASSIFICATION.examples_per_step(data, 0) == int(m.sum())

    class Fixed(torch.nn.Module):
        def forward(self, x, adj):
            return logits.detach()

    res = evaluate_graph(Fixed(), data)
    for split in ("train", "val", "test"):
        mk = payload[f"{split}_mask"]
        assert res[f"{split}_loss"] == torch.nn.functional.cross_entropy(logits.detach()[mk], payload["y"][mk]).item()
        assert res[f"{split}_acc"] == (logits.detach()[mk].argmax(1) == payload["y"][mk]).float().mean().item()
