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


def test_threads_zero_means_all_cores():
    import os

    assert resolve_threads(3) == 3
    assert resolve_threads(0) == len(os.sched_getaffinity(0))
