"""Architecture registry: adding an architecture is one module plus one line below."""

from __future__ import annotations

from paibench.models import gnn, resnet_cifar, vgg
from paibench.models.base import (
    ArchSpec,
    example_input,
    prunable_modules,
    prunable_parameters,
)
from paibench.options import Option
from paibench.registry import Registry

ARCHS: Registry[ArchSpec] = Registry("arch")
ARCHS.add("vgg16", ArchSpec("vgg16", "image", vgg.builder("vgg16"), description="VGG-16-bn, CIFAR style"))
ARCHS.add("resnet20", ArchSpec("resnet20", "image", resnet_cifar.builder(20),
                               {"skip": Option(bool, True, help="keep the residual shortcuts")},
                               "CIFAR ResNet-20 (0.27 M parameters at width 1)"))
ARCHS.add("gcn", ArchSpec("gcn", "graph", gnn.build_gcn,
                          {"hidden": Option(int, 256, minimum=1), "layers": Option(int, 3, minimum=2),
                           "dropout": Option(float, 0.5, minimum=0.0, maximum=0.99)},
                          "GCN, OGB arxiv baseline layout (3 layers, hidden 256, BN, dropout 0.5)"))


def build_model(arch: str, info, width: float = 1.0, options: dict | None = None, seed: int | None = None):
    """Build `arch` for the dataset shape `info`; with `seed`, the initial weights are a function of it alone."""
    import torch

    spec = ARCHS.get(arch)
    if spec.kind != info.kind:
        from paibench.errors import PaibenchError

        raise PaibenchError(f"arch: {arch!r} is a {spec.kind} model and cannot run on the {info.kind} dataset {info.name!r}")
    opts = spec.parse_options(options or {})
    if seed is None:
        return spec.build(info, width, **opts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build(info, width, **opts)


__all__ = ["ARCHS", "ArchSpec", "build_model", "example_input", "prunable_modules", "prunable_parameters"]
