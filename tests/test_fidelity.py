"""Reference behaviours (issue: fidelity to MiCA, naver/force and ExpandersPruning), each on a small case
whose answer can be checked by hand, plus the presets that select them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paibench.config import Grid, load_config_file
from paibench.data.base import DatasetInfo, augment_images, info_from_payload
from paibench.models import build_model, prunable_parameters
from paibench.pruning import dense_layer_names, make_mask
from paibench.pruning.effective import effective_masks
from paibench.pruning.maskio import load_mask
from paibench.pruning.methods.expanders import collapsed_configuration_graph
from paibench.pruning.methods.iterative import keep_schedule
from paibench.pruning.methods.saliency import loss_of
from paibench.pruning.stats import mask_statistics
from paibench.tasks.image import ImageData
from paibench.training import parse_train_config, summarize

REPO = Path(__file__).resolve().parents[1]
WIDTH = 0.125


def _mask(tmp_path, method, options=None, compression=30, seed=0, payload=None, arch="vgg16", dataset="digits",
          name=None, width=WIDTH):
    out = tmp_path / f"{name or method}.safetensors"
    stats = make_mask(dataset, arch, method, compression, seed, str(out), options=options or {}, width=width,
                      payload=payload)
    return out, stats


# ------------------------------------------------------------------------------------------ MiCA
class ConvBNChain(nn.Module):
    """conv(1->2) -> BN -> ReLU -> conv(2->2) -> BN -> ReLU -> global pool -> linear(2->2), all 1x1 kernels."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 2, 1, bias=False)
        self.b1 = nn.BatchNorm2d(2)
        self.c2 = nn.Conv2d(2, 2, 1, bias=False)
        self.b2 = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        x = F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_mica_reference_effective_rule_keeps_weights_fed_by_a_batchnorm_shift():
    """c1 feeds only channel 0; channel 1 of c1 has no kept input, but its BatchNorm shift makes it a
    source under the reference's rule, so c2's weight from it counts; c2's output 1 feeds nothing (a dead
    end towards the output) and is removed by both rules."""
    masks = {
        "c1.weight": torch.tensor([1, 0], dtype=torch.bool).view(2, 1, 1, 1),
        "c2.weight": torch.tensor([[1, 1], [1, 0]], dtype=torch.bool).view(2, 2, 1, 1),
        "fc.weight": torch.tensor([[1, 0], [1, 0]], dtype=torch.bool),
    }
    info = DatasetInfo("hand", "image", 2, 1, (2, 2))
    paths, collapsed = effective_masks(ConvBNChain(), masks, info, "paths")
    mica, collapsed_mica = effective_masks(ConvBNChain(), masks, info, "mica")
    assert not collapsed and not collapsed_mica
    # paths: c2 in 0 -> out 0 only (in 1 is unreachable; out 1 is a dead end)
    assert paths["c2.weight"].flatten().tolist() == [True, False, False, False]
    # mica: in 1 -> out 0 counts too (channel 1 is live through its shift); out 1 still a dead end
    assert mica["c2.weight"].flatten().tolist() == [True, True, False, False]
    assert paths["c1.weight"].flatten().tolist() == mica["c1.weight"].flatten().tolist() == [True, False]
    stats = mask_statistics(ConvBNChain(), masks, info)
    assert (stats["effective_kept"], stats["effective_kept_mica"]) == (4, 5)
    assert [layer["effective_kept_mica"] for layer in stats["layers"]] == [1, 2, 2]


def test_mica_rule_collapses_only_without_any_weight_reaching_the_output():
    masks = {"c1.weight": torch.zeros(2, 1, 1, 1, dtype=torch.bool),
             "c2.weight": torch.ones(2, 2, 1, 1, dtype=torch.bool),
             "fc.weight": torch.ones(2, 2, dtype=torch.bool)}
    info = DatasetInfo("hand", "image", 2, 1, (2, 2))
    _, collapsed = effective_masks(ConvBNChain(), masks, info, "paths")
    eff, collapsed_mica = effective_masks(ConvBNChain(), masks, info, "mica")
    assert collapsed and not collapsed_mica and int(eff["c2.weight"].sum()) == 4
    masks["fc.weight"] = torch.zeros(2, 2, dtype=torch.bool)
    assert effective_masks(ConvBNChain(), masks, info, "mica")[1]


def test_score_mode_eval_and_train_give_different_snip_masks(tmp_path, digits_payload):
    """BatchNorm uses batch statistics in train mode and running ones (the identity at init) in eval."""
    a, sa = _mask(tmp_path, "snip", {"score_mode": "train"}, payload=digits_payload, name="train")
    b, sb = _mask(tmp_path, "snip", {"score_mode": "eval"}, payload=digits_payload, name="eval")
    ma, mb = load_mask(a)[0], load_mask(b)[0]
    assert sa["kept"] == sb["kept"]
    assert any(not torch.equal(ma[n], mb[n]) for n in ma)
    # the default is train and is not recorded (masks made before the option existed keep their bytes)
    c, _ = _mask(tmp_path, "snip", payload=digits_payload, name="default")
    assert c.read_bytes() == a.read_bytes()
    assert "score_mode" not in json.loads(load_mask(c)[1]["options"])


def test_score_mode_reaches_a_data_dependent_budget(tmp_path, digits_payload):
    a, _ = _mask(tmp_path, "rpi", {"budget": "snip", "score_mode": "eval"}, payload=digits_payload, name="eval")
    b, _ = _mask(tmp_path, "rpi", {"budget": "snip"}, payload=digits_payload, name="train")
    counts = lambda p: [int(m.sum()) for _, m in sorted(load_mask(p)[0].items())]  # noqa: E731
    assert counts(a) != counts(b)


def test_budget_mask_effective_counts_are_the_rpi_masks_effective_counts(tmp_path):
    """The reference's effective-compression protocol: MiCA takes the RPI mask's per-layer effective counts."""
    rpi, rpi_stats = _mask(tmp_path, "rpi", {"budget": "erk"}, compression=30, name="rpi")
    opts = {"budget": "erk", "budget_mask": str(rpi), "budget_counts": "effective", "effective_definition": "mica"}
    mica, stats = _mask(tmp_path, "mica", opts, compression=30, name="mica")
    expected = [layer["effective_kept_mica"] for layer in rpi_stats["layers"]]
    assert [layer["kept"] for layer in stats["layers"]] == expected
    # MiCA's nominal ratio is the RPI mask's effective ratio (above RPI's own nominal one)
    assert stats["nominal_compression"] == pytest.approx(rpi_stats["effective_compression_mica"])
    assert rpi_stats["effective_compression_mica"] > rpi_stats["nominal_compression"] * 1.05
    # the budget mask's content, not its path, seeds the mask
    moved = tmp_path / "elsewhere" / "rpi.safetensors"
    moved.parent.mkdir()
    shutil.copy(rpi, moved)
    again, _ = _mask(tmp_path, "mica", {**opts, "budget_mask": str(moved)}, compression=30, name="again")
    assert load_mask(again)[0].keys() == load_mask(mica)[0].keys()
    assert all(torch.equal(load_mask(again)[0][n], load_mask(mica)[0][n]) for n in load_mask(mica)[0])
    # kept counts of the file by default
    kept, kstats = _mask(tmp_path, "rpi", {"budget": "erk", "budget_mask": str(rpi)}, compression=30, name="kept")
    assert [layer["kept"] for layer in kstats["layers"]] == [layer["kept"] for layer in rpi_stats["layers"]]


def test_budget_mask_of_another_architecture_is_one_clear_error(tmp_path):
    other, _ = _mask(tmp_path, "erk", arch="resnet20", name="other")
    with pytest.raises(Exception, match="budget_mask.*does not fit this architecture"):
        _mask(tmp_path, "mica", {"budget": "erk", "budget_mask": str(other)})


@pytest.mark.parametrize("options", [{"v_out": "ignore"}, {"only_v_in": True}])
def test_mica_ablation_options_keep_exact_counts_and_change_the_mask(tmp_path, options):
    base, bstats = _mask(tmp_path, "mica", {"budget": "erk"}, compression=100, name="base")
    alt, astats = _mask(tmp_path, "mica", {"budget": "erk", **options}, compression=100, name="alt")
    assert [lay["kept"] for lay in astats["layers"]] == [lay["kept"] for lay in bstats["layers"]]
    assert base.read_bytes() != alt.read_bytes()


def test_report_max_test_is_the_maximum_test_accuracy_over_epochs():
    history = [{"epoch": 1, "test_acc": 0.5, "val_acc": 0.9}, {"epoch": 2, "test_acc": 0.8, "val_acc": 0.1},
               {"epoch": 3, "test_acc": 0.6, "val_acc": 0.2}]
    out = summarize(history, parse_train_config({"report": "max_test"}), "ok")
    assert (out["accuracy"], out["report"], out["max_test_acc"]) == (0.8, "max_test", 0.8)
    final = summarize(history, parse_train_config({}), "ok")
    assert (final["accuracy"], final["report"]) == (0.6, "final")


# ------------------------------------------------------------------------------------------ FORCE
def test_nll_on_logits_is_the_gradient_of_minus_the_target_logit():
    net = nn.Linear(3, 4)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 1])
    loss = loss_of(net, ((x,), y), "nll_logits")
    assert loss.item() == pytest.approx(-net(x)[torch.arange(5), y].mean().item(), rel=1e-6)
    (g,) = torch.autograd.grad(loss, net.bias)
    expected = -torch.bincount(y, minlength=4).float() / 5  # d(-mean z_y)/db_c = -(count of c)/B
    assert torch.allclose(g, expected)
    assert not torch.allclose(g, torch.autograd.grad(loss_of(net, ((x,), y)), net.bias)[0])


def test_keep_schedules():
    assert keep_schedule(1000, 10, 3, "exp") == [464, 215, 100]
    assert keep_schedule(1000, 10, 3, "linear") == [700, 400, 100]  # 1 - t(1 - 0.1)/3


def test_force_reference_batching_and_whole_split(tmp_path, digits_payload):
    """batching=random draws batch_size images per batch; num_batches=-1 draws one pass worth of them."""
    from paibench.pruning import pruning_batches

    # a 320-image training split: one pass is 5 batches of 64 (the whole digits split would be 23 per step)
    digits_payload = {**digits_payload, "x_train": digits_payload["x_train"][:320],
                      "y_train": digits_payload["y_train"][:320]}
    info = info_from_payload(digits_payload)
    gen = torch.Generator().manual_seed(0)
    opts = {"batching": "random", "batch_size": 64, "augment": True}
    batches = pruning_batches(digits_payload, info, opts, gen, torch.device("cpu"))
    n_train = len(digits_payload["y_train"])
    assert batches.per_epoch == -(-n_train // 64)
    (xb,), yb = next(batches(1))
    assert xb.shape[0] == yb.shape[0] == 64
    ref = {"T": 3, "loss": "nll_logits", "schedule": "linear", "num_batches": -1, **opts}
    a, sa = _mask(tmp_path, "force", ref, payload=digits_payload, name="a")
    b, _ = _mask(tmp_path, "force", ref, payload=digits_payload, name="b")
    c, _ = _mask(tmp_path, "force", {"T": 3}, payload=digits_payload, name="c")
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert sa["kept"] == round(sa["total"] / 30)
    with pytest.raises(Exception, match="num_batches"):
        _mask(tmp_path, "force", {"num_batches": 0}, payload=digits_payload, name="bad")


# ------------------------------------------------------------------------------------------ RReg
def test_xnet_reference_orientation_first_vgg_conv_has_nine_channel_edges(tmp_path):
    """Every input channel picks d=3 outputs: 3 inputs x 3 = 9 channel edges, at most 9 of 64 outputs live."""
    path, _ = _mask(tmp_path, "xnet", {"degree": 3, "orientation": "input"}, arch="vgg16_rreg", width=1.0,
                    compression=10, name="ref", dataset="cifar10")
    first = load_mask(path)[0]["features.0.weight"]  # (64, 3, 3, 3), the same over the kernel
    chan = first[:, :, 0, 0]
    assert int(chan.sum()) == 9 and chan.sum(0).tolist() == [3, 3, 3] and int(chan.any(1).sum()) <= 9
    assert torch.equal(first, chan[:, :, None, None].expand_as(first))
    larger, _ = _mask(tmp_path, "xnet", {"degree": 3}, arch="vgg16_rreg", width=1.0, compression=10, name="larger",
                      dataset="cifar10")
    assert bool(load_mask(larger)[0]["features.0.weight"].all())  # paibench's default: each output picks 3 of 3


def test_random_graph_edges_have_probability_degree_over_outputs(tmp_path):
    path, stats = _mask(tmp_path, "random_graph", {"degree": 8, "orientation": "input"}, arch="vgg16_rreg",
                        width=1.0, compression=10)
    masks = load_mask(path)[0]
    chan = masks["features.14.weight"][:, :, 0, 0]  # 128 -> 256 channels: expected in-degree 8 of each input
    assert chan.shape == (256, 128)
    assert abs(chan.sum(0).float().mean().item() - 8) < 1.0
    assert chan.sum(0).min() < chan.sum(0).max()  # Bernoulli edges: degrees vary (not regular)
    # (determinism: tests/test_contracts.py checks every method)


def test_rreg_collapse_merges_repeated_pairs():
    gen = torch.Generator().manual_seed(0)
    adj = collapsed_configuration_graph(64, 3, 3, gen)  # 192 stubs on 3 channels: every pair repeats
    assert bool((adj.sum(1) <= 3).all()) and int(adj.sum()) < 192


def test_rreg_graph_reuse_gives_one_graph_per_size_across_layers_and_seeds(tmp_path):
    opts = {"degree": 4, "samples": 2, "subsets": 10, "graph_reuse": True}
    a, _ = _mask(tmp_path, "rreg", opts, arch="vgg16_rreg", width=0.25, compression=10, seed=0, name="a")
    b, _ = _mask(tmp_path, "rreg", opts, arch="vgg16_rreg", width=0.25, compression=10, seed=1, name="b")
    ma, mb = load_mask(a)[0], load_mask(b)[0]
    assert all(torch.equal(ma[n], mb[n]) for n in ma)
    same_shape = [n for n in ma if ma[n].shape == ma["features.30.weight"].shape]
    assert len(same_shape) > 1 and all(torch.equal(ma[n], ma[same_shape[0]]) for n in same_shape)
    c, _ = _mask(tmp_path, "rreg", {**opts, "graph_reuse": False}, arch="vgg16_rreg", width=0.25,
                 compression=10, seed=1, name="c")
    assert c.read_bytes() != b.read_bytes()


@pytest.mark.parametrize("method,options", [("erk", {}), ("mica", {"budget": "erk"}), ("rreg", {"degree": 2}),
                                            ("magnitude", {})])
def test_dense_layers_are_kept_whole_and_recorded(tmp_path, method, options):
    out, stats = _mask(tmp_path, method, {**options, "dense_layers": "first,last"}, arch="resnet20", compression=20)
    masks, meta = load_mask(out)
    names = list(prunable_parameters(build_model("resnet20", DatasetInfo("digits", "image", 10, 1, (8, 8)),
                                                 WIDTH, {})))
    assert stats["dense_layers"] == [names[0], names[-1]]
    assert bool(masks[names[0]].all()) and bool(masks[names[-1]].all())
    assert json.loads(meta["options"])["dense_layers"] == "first,last"
    if method != "rreg":  # the degree fixes rreg's count; the others keep exactly the network-wide target
        assert stats["kept"] == round(stats["total"] / 20)


def test_dense_layer_selectors():
    names = ["conv1.weight", "layer1.0.conv1.weight", "fc.weight"]
    assert dense_layer_names("first, fc.*", names) == ["conv1.weight", "fc.weight"]
    with pytest.raises(Exception, match="dense_layers: 'classifier.\\*' matches no prunable layer"):
        dense_layer_names("classifier.*", names)


def test_random_crop_input_trains_and_tests_on_windows(digits_payload):
    payload = {**digits_payload, "augment": {"crop_padding": 0, "flip": True, "random_crop": 6}}
    assert info_from_payload(payload).size == (6, 6)
    data = ImageData(payload, torch.device("cpu"))
    assert tuple(data.x_test.shape[2:]) == (6, 6)
    again = ImageData(payload, torch.device("cpu"))
    assert torch.equal(data.x_test, again.x_test)  # evaluation windows are drawn once, from a fixed seed
    out = data.augment(data.x_train[:16], torch.Generator().manual_seed(0))
    assert tuple(out.shape[2:]) == (6, 6)
    x = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8)
    window = augment_images(x, 0, False, torch.Generator().manual_seed(3), crop=6)[0, 0]
    top, left = divmod(int(window[0, 0]), 8)
    assert torch.equal(window, x[0, 0, top:top + 6, left:left + 6])


# ------------------------------------------------------------------------------------------ presets
def _grid(name):
    return Grid(load_config_file(REPO / "config" / "paper" / f"{name}.yaml"), base_dir=REPO)


def test_presets_select_the_reference_behaviours():
    mica, force, rreg = _grid("mica"), _grid("force"), _grid("rreg")
    for grid in (mica, force, rreg):
        assert all(train["amp"] == "off" for train in grid.train.values())  # the references train in fp32
    data_dep = [m for m in mica.methods.values() if not m.budget_from and (
        m.options.get("budget") in ("snip", "grasp") or m.name in ("snip", "grasp"))]
    assert data_dep and all(m.options["score_mode"] == "eval" for m in data_dep)
    assert all(train["report"] == "max_test" for train in mica.train.values() if train["epochs"] == 160)
    assert mica.config["figures"]["effective_definition"] == "mica"
    from_rpi = [m for m in mica.methods.values() if m.budget_from]
    assert from_rpi and all(m.options["budget_counts"] == "effective" for m in from_rpi)
    vgg = {r.compression for r in mica.runs if r.experiment == "vgg16"}
    assert {"3.16228", "1e6"} <= vgg and len(vgg - {"1"}) == 12
    resnet = {r.compression for r in mica.runs if r.experiment == "resnet20"}
    assert "10000" in resnet and len(resnet - {"1"}) == 8
    assert {"resnet20_effective", "resnet20_without_skip_effective"} <= set(mica.config["experiments"])
    progressive = [m for m in force.methods.values() if m.name in ("force", "iter_snip")]
    assert progressive and all(m.options["loss"] == "nll_logits" and m.options["batching"] == "random"
                               and m.options["batch_size"] == 128 and m.options["score_mode"] == "train"
                               for m in progressive)
    assert force.train["tinyimagenet"]["val_fraction"] == 0.0
    xnet = [m for m in rreg.methods.values() if m.name in ("xnet", "random_graph")]
    assert xnet and all(m.options["orientation"] == "input" for m in xnet)
    rregs = [m for m in rreg.methods.values() if m.name == "rreg"]
    assert rregs and all((m.options["samples"], m.options["subsets"], m.options["graph_reuse"]) == (100, 1000, True)
                         for m in rregs)
    assert any(m.name == "random_graph" for m in rreg.methods.values())
    vgg_tiny = {r.dataset for r in rreg.runs if r.experiment == "vgg16_tinyimagenet"}
    assert {rreg.datasets[d].options["crop"] for d in vgg_tiny} == {32}


def test_budget_from_is_a_workflow_dependency_and_checked(tmp_path):
    config = {"experiments": {"e": {
        "datasets": ["digits"], "archs": [{"name": "vgg16", "width": 0.125}],
        "methods": [{"name": "rpi", "budget": "erk"},
                    {"name": "mica", "budget": "erk", "budget_counts": "effective", "budget_from": "rpi_budget=erk"}],
        "compressions": [100], "seeds": [0], "effective_definition": "mica"}}}
    grid = Grid(config)
    label = next(lbl for lbl, m in grid.methods.items() if m.name == "mica")
    assert grid.methods[label].options["effective_definition"] == "mica"
    assert grid.budget_mask(label, "digits", "vgg16_w0.125", "100", 0) == [
        "results/masks/digits/vgg16_w0.125/rpi_budget=erk/c100/s0.safetensors"]
    assert grid.budget_mask("rpi_budget=erk", "digits", "vgg16_w0.125", "100", 0) == []
    assert "budget_mask" not in grid.methods[label].options  # the rule passes the file
    config["experiments"]["e"]["methods"][1]["budget_from"] = "nope"
    with pytest.raises(Exception, match="budget_from: 'nope' is not allowed"):
        Grid(config)


# sha256 of two masks as written before the content_sha256 header field existed (results/masks at 4c9ef99).
LEGACY_MASK_SHA256 = {
    "digits/vgg16_w0.25/erk/c100/s0.json": "b27209634229f95b6da2d63f2214ce957718d48d81e9601e566ae842b927dcf3",
    "digits/resnet20_w0.5/mica_budget=erk/c10/s0.json":
        "83ea7b1f124fd80f1a808c35fd31f1b68633422cea5a7a1563096323fb65fea6",
}


def test_committed_masks_stay_byte_identical(tmp_path):
    """Masks are reproduced byte for byte: the file the committed statistics describe (its sha256), and the
    same tensors and metadata as the masks made before the new options existed (legacy sha256 pinned above;
    today's files add only the content_sha256 header field)."""
    import hashlib

    from paibench.pruning.maskio import serialize_bool_safetensors

    for i, (rel, legacy_sha) in enumerate(LEGACY_MASK_SHA256.items()):
        stats = json.loads((REPO / "results" / "masks" / rel).read_text())
        out = tmp_path / f"{i}.safetensors"
        make_mask(stats["dataset"], stats["arch"], stats["method"], stats["target_compression"], stats["seed"],
                  str(out), options=stats["options"], width=stats["width"], arch_options=stats["arch_options"])
        assert hashlib.sha256(out.read_bytes()).hexdigest() == stats["sha256"], rel
        masks, meta = load_mask(out)
        legacy = serialize_bool_safetensors(masks, {k: v for k, v in meta.items() if k != "content_sha256"})
        assert hashlib.sha256(legacy).hexdigest() == legacy_sha, rel


def test_test_set_selection_is_named_on_the_accuracy_axis():
    import pandas as pd

    from paibench.analysis.figures import accuracy_label
    from paibench.analysis.results import REPORT_LABELS

    assert "chosen on the test set" in accuracy_label(pd.DataFrame({"report": ["max_test"]}))
    assert accuracy_label(pd.DataFrame({"report": ["final", "best-val"]})) == "test accuracy (%)"
    assert "test-set selection" in REPORT_LABELS["max_test"]
