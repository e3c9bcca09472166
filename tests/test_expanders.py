"""X-Net and RReg channel-graph masks, their degree modes, and the graph statistics of `inspect`.

Kept-count tolerance for graph methods (stated in the README): in per-layer mode
|kept - target| <= max over layers of (kernel taps x larger side) / 2; degree mode ignores the target.
"""

from __future__ import annotations

import pytest
import torch

from paibench.data.base import DatasetInfo
from paibench.errors import PaibenchError
from paibench.models import build_model, prunable_parameters
from paibench.pruning.core import PruneContext
from paibench.pruning.methods import METHODS
from paibench.pruning.methods.expanders import _sides, _taps, rreg_graph, xnet_graph
from paibench.pruning.stats import channel_graph, expansion, graph_statistics, mask_statistics, spectral_gap

CIFAR = DatasetInfo("cifar10", "image", 10, 3, (32, 32))


@pytest.fixture(scope="module")
def vgg():
    return build_model("vgg16", CIFAR, 0.25, seed=0)


def run(model, method, compression, seed=0, **opts):
    spec = METHODS.get(method)
    if method != "rreg":  # samples/subsets are rreg's only (best-of-k by expansion)
        opts.pop("samples", None)
        opts.pop("subsets", None)
    ctx = PruneContext(model, prunable_parameters(model), compression, torch.Generator().manual_seed(seed), CIFAR,
                       spec.parse_options(opts))
    return spec.fn(ctx), ctx


def larger_smaller(adj_out_in: torch.Tensor):
    """Degrees of the larger side and of the smaller side of an (out, in) biadjacency."""
    out_deg, in_deg = adj_out_in.sum(1), adj_out_in.sum(0)
    return (out_deg, in_deg) if adj_out_in.shape[0] >= adj_out_in.shape[1] else (in_deg, out_deg)


@pytest.mark.parametrize("n_l,n_s,d", [(64, 64, 3), (128, 64, 5), (64, 3, 2), (32, 32, 20), (100, 7, 7), (48, 40, 39)])
def test_rreg_graph_degrees(n_l, n_s, d):
    adj = rreg_graph(n_l, n_s, d, torch.Generator().manual_seed(1))
    assert adj.shape == (n_l, n_s)
    assert (adj.sum(1) == d).all()
    col = adj.sum(0)
    assert int(col.max() - col.min()) <= 1 and int(col.sum()) == n_l * d


@pytest.mark.parametrize("n_l,n_s,d", [(64, 64, 3), (128, 10, 4), (20, 20, 20)])
def test_xnet_graph_left_regular(n_l, n_s, d):
    adj = xnet_graph(n_l, n_s, d, torch.Generator().manual_seed(1))
    assert (adj.sum(1) == d).all()


@pytest.mark.parametrize("method", ["xnet", "rreg"])
@pytest.mark.parametrize("ratio", [2, 10, 50])
def test_per_layer_mode(vgg, method, ratio):
    masks, ctx = run(vgg, method, ratio, samples=2, subsets=20)
    steps = []
    for name, m in masks.items():
        adj = channel_graph(m)
        assert adj is not None, f"{name} is not constant over the kernel"
        assert torch.equal(m, adj.reshape(adj.shape + (1,) * (m.dim() - 2)).expand(m.shape))
        large, small = larger_smaller(adj)
        assert len(large.unique()) == 1, f"{name}: larger side not regular"
        if method == "rreg":
            assert int(small.max() - small.min()) <= 1, f"{name}: smaller side not within one of its target"
        steps.append(_taps(m.shape) * _sides(m.shape)[0])
    kept = sum(int(m.sum()) for m in masks.values())
    assert abs(kept - ctx.target_kept) <= max(steps) / 2


@pytest.mark.parametrize("method", ["xnet", "rreg"])
def test_degree_mode_ignores_ratio(vgg, method):
    a, _ = run(vgg, method, 10, degree=4, samples=2, subsets=20)
    b, _ = run(vgg, method, 1000, degree=4, samples=2, subsets=20)
    assert {n: int(m.sum()) for n, m in a.items()} == {n: int(m.sum()) for n, m in b.items()}
    for name, m in a.items():
        large, small = larger_smaller(channel_graph(m))
        assert (large == min(4, _sides(m.shape)[1])).all()
        if method == "rreg":
            assert int(small.max() - small.min()) <= 1


def test_unreachable_ratio_and_degree_with_effective_mode(vgg):
    with pytest.raises(PaibenchError, match=r"compression: 1000 .*expected a ratio <="):
        run(vgg, "xnet", 1000)
    with pytest.raises(PaibenchError, match=r"degree.*compression_mode=effective"):
        run(vgg, "rreg", 10, degree=4, compression_mode="effective")


@pytest.mark.parametrize("method", ["xnet", "rreg"])
def test_determinism(vgg, method):
    def flat(masks):
        return torch.cat([m.flatten() for m in masks.values()]).numpy().tobytes()

    a = flat(run(vgg, method, 10, 0, samples=2, subsets=20)[0])
    assert a == flat(run(vgg, method, 10, 0, samples=2, subsets=20)[0])
    assert a != flat(run(vgg, method, 10, 1, samples=2, subsets=20)[0])


def test_make_mask_files_identical(tmp_path):
    from paibench.pruning import make_mask

    outs = [tmp_path / f"r{i}.safetensors" for i in range(2)]
    for out in outs:
        stats = make_mask("cifar10", "vgg16", "rreg", 10, 0, str(out), {"samples": 2, "subsets": 20}, width=0.125)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert all(layer["expansion"] is not None and layer["spectral_gap"] is not None for layer in stats["layers"])


# ------------------------------------------------------------------------- graph statistics (inspect)
def test_graph_statistics_known_graphs():
    complete = torch.ones(6, 4, dtype=torch.bool)
    assert spectral_gap(complete) == pytest.approx(1.0)
    # |N(S)| = the whole other side: the mean over |S| in [1, n/2] of n_other/|S| is > 1
    assert expansion(complete) > 1
    matching = torch.eye(8, dtype=torch.bool)
    assert expansion(matching) == pytest.approx(1.0)
    assert spectral_gap(matching) == pytest.approx(0.0)  # 8 components: sigma_2 = sigma_1
    two_blocks = torch.block_diag(torch.ones(3, 3), torch.ones(3, 3)).bool()
    assert spectral_gap(two_blocks) == pytest.approx(0.0)
    assert expansion(complete) == expansion(complete)  # seeded


def test_channel_graph_detection():
    m = torch.ones(4, 3, 3, 3, dtype=torch.bool)
    assert channel_graph(m).shape == (4, 3)
    m[0, 0, 0, 0] = False  # no longer constant over the kernel
    assert channel_graph(m) is None
    assert graph_statistics(m) == {"expansion": None, "spectral_gap": None}


def test_inspect_stats_for_random_mask_have_no_conv_graph(vgg):
    masks, _ = run(vgg, "random", 10)
    stats = mask_statistics(vgg, masks, CIFAR)
    convs = [layer for layer in stats["layers"] if len(layer["shape"]) == 4]
    assert all(layer["expansion"] is None for layer in convs)
    assert stats["layers"][-1]["expansion"] is not None  # the linear head is a bipartite graph itself
