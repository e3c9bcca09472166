"""Layer budgets (er, igq), ranking methods (magnitude, snip, grasp, synflow) and progressive
skeletonization (iter_snip, force): counts, determinism, and the defining properties of each method."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paibench.data import DATASETS
from paibench.models import build_model, prunable_parameters
from paibench.pruning import make_mask
from paibench.pruning.core import PruneContext, top_k_masks
from paibench.pruning.maskio import load_mask
from paibench.pruning.methods import METHODS
from paibench.pruning.methods.basic import erk_densities
from paibench.pruning.methods.budgets import igq_kept
from paibench.pruning.methods.saliency import _top_k_flat, rank_masks, snip_scores

RANDOM_METHODS = ["er", "igq"]
DATA_FREE = ["er", "igq", "magnitude", "synflow"]
DATA_DEPENDENT = ["snip", "grasp", "iter_snip", "force"]
ALL = DATA_FREE + DATA_DEPENDENT
WIDTH = 0.125
FAST = {"synflow": {"rounds": 20}}  # fewer rounds keep the unit tests fast; the schedule is the same


def _mask(tmp_path, payload, method, compression=30, seed=0, name=None, options=None, arch="vgg16", dataset="digits"):
    out = tmp_path / f"{name or method}.safetensors"
    opts = {**FAST.get(method, {}), **(options or {})}
    stats = make_mask(dataset, arch, method, compression, seed, str(out), options=opts, width=WIDTH,
                      payload=payload)
    return out, stats


def _ctx(model, info, compression=20.0, options=None, batches=None, seed=0, method="synflow"):
    """A context as make_mask builds it: the method's options parsed (defaults filled from its table)."""
    return PruneContext(model, prunable_parameters(model), compression, torch.Generator().manual_seed(seed), info,
                        METHODS.get(method).parse_options(dict(options or {})), batches)


# ---------------------------------------------------------------------------------------------------
# registry contract
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ALL)
def test_registered_with_description_options_and_budget(method):
    spec = METHODS.get(method)
    assert spec.description
    assert spec.budget is not None
    assert spec.data_free == (method in DATA_FREE)
    opts = spec.parse_options({})
    assert opts["compression_mode"] == "nominal"
    if method in DATA_DEPENDENT:
        assert opts["samples_per_class"] == 10
    if method in ("magnitude", "snip", "grasp", "synflow"):
        assert opts["scope"] == "global"


def test_reference_defaults():
    assert METHODS.get("grasp").parse_options({})["temperature"] == 200.0
    assert METHODS.get("synflow").parse_options({})["rounds"] == 100
    for method in ("force", "iter_snip"):
        opts = METHODS.get(method).parse_options({})
        assert (opts["T"], opts["num_batches"]) == (10, 1)  # naver/force command-line defaults


# ---------------------------------------------------------------------------------------------------
# masks: prunable set, exact counts, determinism
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["magnitude", "snip", "synflow"])
def test_layer_scope_exact_per_layer_density(tmp_path, digits_payload, method):
    out, stats = _mask(tmp_path, digits_payload, method, options={"scope": "layer"})
    masks, _ = load_mask(out)
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(total / 30)
    for m in masks.values():  # largest-remainder allocation: every layer within one weight of its share
        assert abs(int(m.sum()) - m.numel() * round(total / 30) / total) < 1


@pytest.mark.parametrize("method", RANDOM_METHODS)
def test_different_seeds_differ(tmp_path, digits_payload, method):
    a, _ = _mask(tmp_path, digits_payload, method, seed=0, name="a")
    b, _ = _mask(tmp_path, digits_payload, method, seed=1, name="b")
    ma, _ = load_mask(a)
    mb, _ = load_mask(b)
    assert any(not torch.equal(ma[n], mb[n]) for n in ma)
    # ...but the per-layer budget is a function of the shapes alone
    assert all(int(ma[n].sum()) == int(mb[n].sum()) for n in ma)


@pytest.mark.parametrize("method", ["snip", "synflow", "force"])
def test_budget_matches_own_mask(digits_payload, method):
    from paibench.tasks.image import class_balanced_batches as image_batches

    info = DATASETS.get("digits").info({})
    model = build_model("vgg16", info, WIDTH, seed=0)
    spec = METHODS.get(method)
    opts = spec.parse_options(FAST.get(method, {}))

    def ctx():
        gen = torch.Generator().manual_seed(3)
        batches = image_batches(digits_payload, 10, gen, torch.device("cpu"))
        return PruneContext(model, prunable_parameters(model), 50.0, gen, info, opts, batches)

    counts = spec.budget(ctx())
    masks = spec.fn(ctx())
    assert counts == {n: int(m.sum()) for n, m in masks.items()}
    assert sum(counts.values()) == ctx().target_kept


# ---------------------------------------------------------------------------------------------------
# exact top-k and tie handling
# ---------------------------------------------------------------------------------------------------

def test_top_k_ties_go_to_lowest_position_and_match_core():
    flat = torch.tensor([1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 0.0])
    assert _top_k_flat(flat, 3).tolist() == [False, True, True, True, False, False, False]
    assert _top_k_flat(flat, 0).sum() == 0 and _top_k_flat(flat, 7).all()
    gen = torch.Generator().manual_seed(0)
    scores = {"a": torch.randint(0, 5, (7, 3), generator=gen).float(), "b": torch.randint(0, 5, (40,), generator=gen).float()}
    for kept in (1, 5, 17, 30, 61):
        for scope in ("global", "layer"):
            fast, ref = rank_masks(scores, kept, scope), top_k_masks(scores, kept, scope)
            assert all(torch.equal(fast[n], ref[n]) for n in scores)


# ---------------------------------------------------------------------------------------------------
# method-defining properties
# ---------------------------------------------------------------------------------------------------

def test_snip_scores_equal_abs_w_times_grad():
    """|dL/dm| at m = 1 (computed through w*m) equals |w * dL/dw| for every weight."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    x, y = torch.randn(6, 1, 5, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    info = DATASETS.get("digits").info({})
    ctx = _ctx(model, info, options={"num_batches": 1}, batches=lambda n: iter([((x,), y)] * n), method="snip")
    scores = snip_scores(ctx)
    assert all(p.grad is None for p in model.parameters())  # the run's model is left untouched

    params = prunable_parameters(model)
    ones = {n: torch.ones_like(p, requires_grad=True) for n, p in params.items()}
    out = torch.func.functional_call(model, {n: p.detach() * ones[n] for n, p in params.items()}, (x,))
    F.cross_entropy(out, y).backward()
    w_grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()))
    for (n, p), g in zip(params.items(), w_grads):
        torch.testing.assert_close(scores[n], ones[n].grad.abs(), rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(scores[n], (p.detach() * g).abs(), rtol=1e-5, atol=1e-9)


def test_snip_runs_on_gcn_with_ignored_nodes(tmp_path):
    spec = DATASETS.get("sbm")
    payload = spec.prepare(spec.parse_options({}), tmp_path)
    out, stats = _mask(tmp_path, payload, "snip", compression=10, arch="gcn", dataset="sbm")
    masks, _ = load_mask(out)
    assert stats["kept"] == round(stats["total"] / 10)
    assert all(m.dtype == torch.bool for m in masks.values())


def test_synflow_ignores_data(tmp_path, digits_payload):
    rounds = {"rounds": 4}  # the property does not depend on how many rounds
    with_data, _ = _mask(tmp_path, digits_payload, "synflow", name="with", options=rounds)
    without, _ = _mask(tmp_path, None, "synflow", name="without", options=rounds)
    shuffled = dict(digits_payload, x_train=torch.flip(digits_payload["x_train"], dims=[0]))
    other, _ = _mask(tmp_path, shuffled, "synflow", name="other", options=rounds)
    assert with_data.read_bytes() == without.read_bytes() == other.read_bytes()


def test_synflow_leaves_model_signs_and_stats_untouched():
    from paibench.pruning.methods.saliency import synflow

    info = DATASETS.get("digits").info({})
    model = build_model("vgg16", info, WIDTH, seed=0)
    before = copy.deepcopy(model.state_dict())
    synflow(_ctx(model, info, options={"rounds": 3}))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_grasp_removes_highest_scores():
    from paibench.pruning.methods.saliency import grasp, grasp_scores
    from paibench.tasks.image import class_balanced_batches as image_batches
    from paibench.data import DATASETS as D

    spec = D.get("digits")
    payload = spec.prepare(spec.parse_options({}), ".")
    info = spec.info({})
    model = build_model("vgg16", info, WIDTH, seed=0)

    def ctx():
        gen = torch.Generator().manual_seed(1)
        return PruneContext(model, prunable_parameters(model), 10.0, gen, info,
                            METHODS.get("grasp").parse_options({"temperature": 200.0, "num_iters": 1}),
                            image_batches(payload, 10, gen, torch.device("cpu")))

    scores = grasp_scores(ctx())
    masks = grasp(ctx())
    kept = torch.cat([scores[n][masks[n]] for n in scores])
    removed = torch.cat([scores[n][~masks[n]] for n in scores])
    assert kept.max() <= removed.min()  # every kept weight scores no higher than any removed one


def test_force_and_iter_snip_differ_at_high_sparsity(tmp_path, digits_payload):
    f, fs = _mask(tmp_path, digits_payload, "force", compression=300)
    s, ss = _mask(tmp_path, digits_payload, "iter_snip", compression=300)
    mf, _ = load_mask(f)
    ms, _ = load_mask(s)
    assert fs["kept"] == ss["kept"]
    differing = sum(int((mf[n] ^ ms[n]).sum()) for n in mf)
    assert differing > 0.1 * fs["kept"]


def test_iter_snip_prunes_permanently_force_can_revive():
    """With 2 steps: iter_snip's final mask is inside its step-1 mask; FORCE's need not be."""
    from paibench.tasks.image import class_balanced_batches as image_batches
    from paibench.pruning.methods.iterative import progressive

    spec = DATASETS.get("digits")
    payload = spec.prepare(spec.parse_options({}), ".")
    info = spec.info({})
    model = build_model("vgg16", info, WIDTH, seed=0)

    def run(force, steps, compression):
        gen = torch.Generator().manual_seed(5)
        ctx = PruneContext(model, prunable_parameters(model), compression, gen, info,
                           METHODS.get("force" if force else "iter_snip").parse_options({"T": steps, "num_batches": 1}),
                           image_batches(payload, 10, gen, torch.device("cpu")))
        return progressive(ctx, force)

    # step 1 of a 2-step run at ratio c is a 1-step run at sqrt(c) with the same first batch
    for force in (False, True):
        first, final = run(force, 1, 100.0 ** 0.5), run(force, 2, 100.0)
        inside = all(bool((final[n] & ~first[n]).sum() == 0) for n in final)
        if not force:
            assert inside
        else:
            assert not inside  # FORCE re-scores all weights, so some pruned at step 1 come back


# ---------------------------------------------------------------------------------------------------
# layer densities
# ---------------------------------------------------------------------------------------------------

def _shapes(arch="vgg16"):
    info = DATASETS.get("cifar10").info(DATASETS.get("cifar10").parse_options({}))
    return {n: p.shape for n, p in prunable_parameters(build_model(arch, info, 0.25)).items()}


@pytest.mark.parametrize("compression", [1.5, 10, 100, 1e3, 1e5])
def test_er_erk_igq_densities_sum_and_bounded(compression):
    shapes = _shapes()
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = sum(sizes.values())
    target = total / compression
    for kernel in (True, False):
        dens = erk_densities(shapes, 1 / compression, kernel=kernel)
        assert all(0 < d <= 1 for d in dens.values())
        assert sum(dens[n] * sizes[n] for n in sizes) == pytest.approx(target, rel=1e-9)
    quotas = igq_kept(sizes, target)
    assert all(0 < q <= sizes[n] for n, q in quotas.items())
    assert sum(quotas.values()) == pytest.approx(target, rel=1e-9)


@pytest.mark.parametrize("method", ["er", "igq", "erk"])
@pytest.mark.parametrize("compression", [2, 50, 1e4])
def test_budget_counts_exact_and_capped(method, compression):
    info = DATASETS.get("cifar10").info(DATASETS.get("cifar10").parse_options({}))
    model = build_model("vgg16", info, 0.25)
    spec = METHODS.get(method)
    ctx = _ctx(model, info, compression, {}, method=method)
    counts = spec.budget(ctx)
    assert sum(counts.values()) == ctx.target_kept
    assert all(0 <= counts[n] <= p.numel() for n, p in ctx.params.items())


def test_igq_prunes_large_layers_hardest_and_spreads_at_extreme_sparsity():
    sizes = {"small": 100, "mid": 10_000, "big": 1_000_000}
    q = igq_kept(sizes, 50_000)
    dens = {n: q[n] / sizes[n] for n in sizes}
    assert dens["small"] > dens["mid"] > dens["big"]
    q = igq_kept(sizes, 30)  # F large: every layer keeps about 1/F, i.e. nearly equal counts
    assert max(q.values()) / min(q.values()) < 1.2


# ---------------------------------------------------------------------------------------------------
# SynFlow: the fast implementation against a plain one, and its precision
# ---------------------------------------------------------------------------------------------------

def _synflow_plain(model, info, compression, rounds, dtype):
    """SynFlow written the obvious way: dense masks, a stable full sort every round, dead weights at -inf."""
    from paibench.models.base import example_input
    from paibench.pruning.core import kept_for

    net = copy.deepcopy(model).to(dtype).eval()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    params = prunable_parameters(net)
    original = {n: p.detach().clone() for n, p in params.items()}
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
    total = sum(p.numel() for p in params.values())
    x = example_input(info, batch=1, dtype=dtype)
    for r in range(1, rounds + 1):
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(original[n] * masks[n])
        grads = torch.autograd.grad(net(*x).sum(), list(params.values()))
        scores = {n: torch.where(masks[n], (g * p).abs(), torch.tensor(-math.inf, dtype=dtype))
                  for (n, p), g in zip(params.items(), grads)}
        masks = top_k_masks(scores, kept_for(total, compression ** (r / rounds)))
    return masks


@pytest.mark.parametrize("compression", [3.0, 50.0, 2000.0])
def test_synflow_matches_plain_implementation(compression):
    from paibench.pruning.methods.saliency import synflow

    info = DATASETS.get("digits").info({})
    model = build_model("vgg16", info, WIDTH, seed=0)
    fast = synflow(_ctx(model, info, compression, {"rounds": 6, "precision": "float64"}))
    plain = _synflow_plain(model, info, compression, 6, torch.float64)
    assert all(torch.equal(fast[n], plain[n]) for n in plain)


def test_kth_largest_bracketing_is_exact(monkeypatch):
    """The sample-bracketed selection (used above ~1M scores) equals a sort, ties, skew and misses included."""
    from paibench.pruning.methods import saliency

    monkeypatch.setattr(saliency, "_DIRECT", 100)  # bracket small inputs so the test stays fast
    monkeypatch.setattr(saliency, "_SAMPLE", 32)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.rand(5000, generator=gen), torch.randint(0, 4, (3000,), generator=gen).float(),
              torch.cat([torch.zeros(4000), torch.rand(1000, generator=gen)]),  # a mass of ties at the bottom
              torch.sort(torch.rand(2048, generator=gen)).values,  # sorted: the strided sample is skewed
              torch.rand(4096, generator=gen).double() ** 12]
    for flat in inputs:
        n = flat.numel()
        ordered = torch.sort(flat, descending=True, stable=True)
        for k in (1, 2, 7, n // 10, n // 3, n // 2, n - 3, n - 1, n):
            assert saliency._kth_largest(flat, k) == ordered.values[k - 1]
            expected = torch.zeros(n, dtype=torch.bool)
            expected[ordered.indices[:k]] = True
            assert torch.equal(saliency._top_k_flat(flat, k), expected)


def test_synflow_precision_float32_by_default_float64_on_overflow(caplog):
    from paibench.errors import PaibenchError
    from paibench.pruning.methods.saliency import synflow

    info = DATASETS.get("digits").info({})
    assert METHODS.get("synflow").parse_options({})["precision"] == "auto"
    with pytest.raises(PaibenchError, match=r"--opt\.precision: .*not allowed.*auto.*float32.*float64"):
        METHODS.get("synflow").parse_options({"precision": "half"}, "--opt")
    # VGG-16 fits float32 (as in the reference): auto is float32, and agrees with float64 but for near-ties
    vgg = build_model("vgg16", info, WIDTH, seed=0)
    auto = synflow(_ctx(vgg, info, 30.0, {"rounds": 10}))
    f32 = synflow(_ctx(vgg, info, 30.0, {"rounds": 10, "precision": "float32"}))
    f64 = synflow(_ctx(vgg, info, 30.0, {"rounds": 10, "precision": "float64"}))
    assert all(torch.equal(auto[n], f32[n]) for n in auto)
    same = sum(int((f32[n] & f64[n]).sum()) for n in f32)
    assert same >= 0.999 * sum(int(m.sum()) for m in f64.values())
    # ResNet-50's synaptic flow overflows float32 even at 1/8 width: auto recomputes in float64
    resnet = build_model("resnet50", info, 0.125, seed=0)
    with pytest.raises(PaibenchError, match=r"precision: R = (inf|nan) in float32.*precision=float64"):
        synflow(_ctx(resnet, info, 30.0, {"rounds": 2, "precision": "float32"}))
    with caplog.at_level("INFO"):
        auto = synflow(_ctx(resnet, info, 30.0, {"rounds": 2}))
    assert "recomputing in float64" in caplog.text
    f64 = synflow(_ctx(resnet, info, 30.0, {"rounds": 2, "precision": "float64"}))
    assert all(torch.equal(auto[n], f64[n]) for n in auto)
