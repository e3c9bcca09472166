"""Model zoo: reference parameter counts, forward shapes on every dataset shape, mask statistics."""

from __future__ import annotations

import pytest
import torch

from paibench.data.base import DatasetInfo
from paibench.models import ARCHS, build_model, example_input, prunable_parameters
from paibench.models.gnn import normalized_adjacency, sum_adjacency
from paibench.pruning.stats import mask_statistics

CIFAR10 = DatasetInfo("cifar10", "image", 10, channels=3, size=(32, 32))
SHAPES = {
    "digits": DatasetInfo("digits", "image", 10, channels=1, size=(8, 8)),
    "cifar100": DatasetInfo("cifar100", "image", 100, channels=3, size=(32, 32)),
    "tinyimagenet": DatasetInfo("tinyimagenet", "image", 200, channels=3, size=(64, 64)),
}
GRAPH = DatasetInfo("ogbn-arxiv", "graph", 40, num_features=128)

# Total parameters (weights, biases, BN affine) on CIFAR-10 at width 1, equal to the reference definitions:
# open_lth / Synaptic-Flow lottery_vgg (conv bias, one linear) and lottery_resnet (1x1 projections; MiCA's
# copy drops the shortcut modules when skip is off); FORCE models.py VGG (no conv bias) and CIFAR ResNets;
# RReg vgg16bn.py (torchvision layout) and torchvision-style ResNet stem; Zagoruyko WRN; CIFAR MobileNetV2.
REFERENCE = {
    ("vgg11", ()): 9_231_114,
    ("vgg13", ()): 9_416_010,
    ("vgg16", ()): 14_728_266,  # "VGG-16-bn ~ 14.7 M"
    ("vgg19", ()): 20_040_522,
    ("vgg19_force", ()): 20_035_018,
    ("vgg16_rreg", ()): 14_990_922,
    ("resnet20", ()): 272_474,  # "ResNet-20 ~ 0.27 M"
    ("resnet20", (("skip", False),)): 269_722,
    ("resnet32", ()): 466_906,
    ("resnet44", ()): 661_338,
    ("resnet56", ()): 855_770,
    ("resnet110", ()): 1_730_714,
    ("resnet18", ()): 11_173_962,
    ("resnet18", (("stem", "imagenet"),)): 11_181_642,
    ("resnet34", ()): 21_282_122,
    ("resnet50", ()): 23_520_842,
    ("resnet101", ()): 42_512_970,
    ("resnet152", ()): 58_156_618,
    ("wrn28_4", ()): 5_849_050,
    ("wrn28_10", ()): 36_479_194,  # "WRN-28-10 ~ 36.5 M"
    ("wrn40_14", ()): 109_416_410,
    ("mobilenetv2", ()): 2_296_922,
}
GRAPH_REFERENCE = {"gcn": 110_120, "gin": 309_032}  # gcn = OGB leaderboard count for the arxiv GCN baseline

IMAGE_ARCHS = [a for a in ARCHS.names() if ARCHS.get(a).kind == "image"]
GRAPH_ARCHS = [a for a in ARCHS.names() if ARCHS.get(a).kind == "graph"]


def _count(arch, info, options=None):
    # On the meta device nothing is allocated or initialised, so 100 M-parameter models count instantly.
    with torch.device("meta"):
        model = build_model(arch, info, 1.0, dict(options or {}))
    return sum(p.numel() for p in model.parameters())


def test_every_arch_has_a_reference_count():
    pinned = {a for a, _ in REFERENCE} | set(GRAPH_REFERENCE)
    assert pinned == set(ARCHS.names())


@pytest.mark.parametrize("arch,options", sorted(REFERENCE), ids=lambda v: str(v))
def test_parameter_count_matches_reference(arch, options):
    assert _count(arch, CIFAR10, options) == REFERENCE[(arch, options)]


@pytest.mark.parametrize("arch", GRAPH_ARCHS)
def test_graph_parameter_count(arch):
    assert _count(arch, GRAPH) == GRAPH_REFERENCE[arch]


def test_prunable_are_conv_and_linear_weights_only():
    model = build_model("mobilenetv2", CIFAR10, 0.25)
    names = set(prunable_parameters(model))
    assert names and all(n.endswith("weight") for n in names)
    assert not any(".bn" in n for n in names)
    assert any(p.shape[1] == 1 for p in prunable_parameters(model).values())  # depthwise convs are prunable


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("arch", IMAGE_ARCHS)
def test_image_forward_shapes(arch, shape):
    info = SHAPES[shape]
    model = build_model(arch, info, 0.125, seed=0).eval()
    x = torch.randn(1, info.channels, *info.size)  # eval-mode BN: one sample is enough
    with torch.no_grad():
        assert model(x).shape == (1, info.num_classes)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_imagenet_stem_on_tinyimagenet(arch):
    info = SHAPES["tinyimagenet"]
    model = build_model(arch, info, 0.125, {"stem": "imagenet"}).eval()
    assert model.conv.kernel_size == (7, 7) and isinstance(model.pool, torch.nn.MaxPool2d)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 200)


def test_resnet_without_skip_has_no_shortcut_weights():
    with_skip = prunable_parameters(build_model("resnet32", CIFAR10, 0.25))
    without = prunable_parameters(build_model("resnet32", CIFAR10, 0.25, {"skip": False}))
    assert set(without) < set(with_skip)
    assert not any("shortcut" in n for n in without)


@pytest.mark.parametrize("arch", GRAPH_ARCHS)
def test_graph_forward_shapes(arch):
    info = DatasetInfo("sbm", "graph", 4, num_features=16)
    model = build_model(arch, info, 0.125, seed=0).eval()
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    with torch.no_grad():
        out = model(torch.randn(5, 16), normalized_adjacency(edge_index, 5))
    assert out.shape == (5, 4)
    assert all(isinstance(m, torch.nn.Linear) for m in model.modules() if hasattr(m, "weight") and m.weight.dim() == 2)


def test_gin_aggregates_by_sum_over_neighbours_and_self():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    adj = normalized_adjacency(edge_index, 3)
    h = torch.tensor([[1.0], [10.0], [100.0]])
    agg = torch.sparse.mm(sum_adjacency(adj), h)
    assert agg.view(-1).tolist() == [11.0, 111.0, 110.0]


@pytest.mark.parametrize("arch", IMAGE_ARCHS + GRAPH_ARCHS)
def test_dense_mask_statistics(arch):
    spec = ARCHS.get(arch)
    info = SHAPES["digits"] if spec.kind == "image" else DatasetInfo("sbm", "graph", 4, num_features=8)
    model = build_model(arch, info, 0.125, seed=0)
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    assert example_input(info)[0].shape[0] == 1
    stats = mask_statistics(model, masks, info)
    assert not stats["collapsed"]
    assert stats["total"] == stats["kept"] == sum(m.numel() for m in masks.values())
    assert 0 < stats["effective_kept"] <= stats["kept"]


def _bag_of_words_graph(nodes=12, features=40, density=0.08, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(nodes, features, generator=gen) * (torch.rand(nodes, features, generator=gen) < density)
    edge_index = torch.randint(0, nodes, (2, 30), generator=gen)
    return x, normalized_adjacency(torch.cat([edge_index, edge_index.flip(0)], dim=1), nodes)


@pytest.mark.parametrize("arch", GRAPH_ARCHS)
@pytest.mark.parametrize("directed", [False, True])
def test_sparse_path_gives_the_dense_product_and_gradients(arch, directed):
    """CSR features (with the COO adjacency, or with the CSR adjacency of the sparse path) give the dense
    features' outputs and gradients; on a directed graph the adjacency is asymmetric, so the stored transpose
    is what the gradient needs."""
    from paibench.models.gnn import SparseAdjacency, SparseFeatures

    x, adj = _bag_of_words_graph()
    if directed:
        gen = torch.Generator().manual_seed(1)
        adj = normalized_adjacency(torch.randint(0, x.shape[0], (2, 30), generator=gen), x.shape[0])
        assert not torch.equal(adj.to_dense(), adj.to_dense().t())
    model = build_model(arch, DatasetInfo("sbm", "graph", 4, num_features=x.shape[1]), 0.25, seed=0).eval()
    outputs, grads = [], []
    for features, adjacency in ((x, adj), (SparseFeatures(x), adj), (SparseFeatures(x), SparseAdjacency(adj))):
        model.zero_grad()
        out = model(features, adjacency)
        (out * torch.arange(out.numel()).view_as(out)).sum().backward()
        outputs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for variant in (1, 2):
        assert torch.allclose(outputs[0], outputs[variant], atol=1e-5)
        for name in grads[0]:
            assert torch.allclose(grads[0][name], grads[variant][name], atol=1e-4), (variant, name)
    first = next(p for p in model.parameters() if p.dim() == 2)
    assert grads[2][next(n for n, p in model.named_parameters() if p is first)].abs().sum() > 0


def test_feature_product_auto_is_sparse_only_for_sparse_features_on_the_cpu():
    from paibench.models.gnn import SparseAdjacency, SparseFeatures
    from paibench.tasks.node import SPARSE_FEATURES_MAX_DENSITY, GraphData

    x, _ = _bag_of_words_graph(density=0.05)
    dense_x = torch.rand(12, 40) + 0.1
    edge_index = torch.tensor([[0, 1], [1, 0]])
    payload = {"edge_index": edge_index, "y": torch.zeros(12, dtype=torch.long),
               **{f"{k}_mask": torch.ones(12, dtype=torch.bool) for k in ("train", "val", "test")}}
    cpu = torch.device("cpu")
    assert (x != 0).float().mean() <= SPARSE_FEATURES_MAX_DENSITY
    for x_, mode, sparse_path in ((x, "auto", True), (dense_x, "auto", False), (x, "dense", False),
                                  (dense_x, "sparse", True)):
        data = GraphData(dict(payload, x=x_), cpu, mode)
        assert isinstance(data.x, SparseFeatures) == sparse_path, mode
        assert isinstance(data.adj, SparseAdjacency) == sparse_path, mode
        assert sparse_path or data.adj.is_sparse
