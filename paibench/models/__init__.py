"""Architecture registry: adding an architecture is one module plus one line below.

Builders are named, not imported (``Ref``): the model modules (and torch) load when a model is built, so
reading a config or listing the registry stays light.
"""

from __future__ import annotations

from paibench.lazy import Ref
from paibench.models.spec import ArchSpec
from paibench.options import Option
from paibench.registry import Registry

ARCHS: Registry[ArchSpec] = Registry("arch", group="paibench.archs", item_type=ArchSpec)
ARCHS.add("vgg16", ArchSpec("vgg16", "image", Ref("paibench.models.vgg:builder", "vgg16"), description="VGG-16-bn, CIFAR style"))
ARCHS.add("resnet20", ArchSpec("resnet20", "image", Ref("paibench.models.resnet_cifar:builder", 20),
                               {"skip": Option(bool, True, help="keep the residual shortcuts")},
                               "CIFAR ResNet-20 (0.27 M parameters at width 1)"))
ARCHS.add("gcn", ArchSpec("gcn", "graph", Ref("paibench.models.gnn:build_gcn"),
                          {"hidden": Option(int, 256, minimum=1), "layers": Option(int, 3, minimum=2),
                           "dropout": Option(float, 0.5, minimum=0.0, maximum=0.99)},
                          "GCN, OGB arxiv baseline layout (3 layers, hidden 256, BN, dropout 0.5)"))
for _d in (11, 13, 19):
    ARCHS.add(f"vgg{_d}", ArchSpec(f"vgg{_d}", "image", Ref("paibench.models.vgg:builder", f"vgg{_d}"), description=f"VGG-{_d}-bn, CIFAR style (open_lth)"))
ARCHS.add("vgg19_force", ArchSpec("vgg19_force", "image", Ref("paibench.models.vgg:builder", "vgg19", "force"), description="VGG-19-bn as FORCE (no conv bias)"))
ARCHS.add("vgg16_rreg", ArchSpec("vgg16_rreg", "image", Ref("paibench.models.vgg:builder", "vgg16", "rreg"), description="VGG-16-bn as RReg (torchvision layout, 512-512 head)"))
for _d in (32, 44, 56, 110):
    ARCHS.add(f"resnet{_d}", ArchSpec(f"resnet{_d}", "image", Ref("paibench.models.resnet_cifar:builder", _d),
                                      {"skip": Option(bool, True, help="keep the residual shortcuts")}, f"CIFAR ResNet-{_d}"))
for _d in (18, 34, 50, 101, 152):
    ARCHS.add(f"resnet{_d}", ArchSpec(f"resnet{_d}", "image", Ref("paibench.models.resnet:builder", _d),
                                      {"stem": Option(str, "cifar", choices=("cifar", "imagenet"), help="3x3 no max-pool, or 7x7/2 + max-pool")},
                                      f"ResNet-{_d} (CIFAR or ImageNet stem)"))
for _d, _k in ((28, 4), (28, 10), (40, 14)):
    ARCHS.add(f"wrn{_d}_{_k}", ArchSpec(f"wrn{_d}_{_k}", "image", Ref("paibench.models.wide_resnet:builder", _d, _k), description=f"Wide ResNet WRN-{_d}-{_k}"))
ARCHS.add("mobilenetv2", ArchSpec("mobilenetv2", "image", Ref("paibench.models.mobilenet:build"), description="MobileNetV2, CIFAR variant"))
ARCHS.add("gin", ArchSpec("gin", "graph", Ref("paibench.models.gnn:build_gin"),
                          {"hidden": Option(int, 256, minimum=1), "layers": Option(int, 3, minimum=2),
                           "dropout": Option(float, 0.5, minimum=0.0, maximum=0.99)},
                          "GIN-0 (sum aggregation), 3 layers, hidden 256, BN, dropout 0.5"))


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


_BASE = ("example_input", "prunable_modules", "prunable_parameters", "prunable_types", "weight_uses")


def __getattr__(name: str):
    if name in _BASE:  # torch helpers of models.base, loaded on first use
        from paibench.models import base

        return getattr(base, name)
    raise AttributeError(f"module 'paibench.models' has no attribute {name!r}")
