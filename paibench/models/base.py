"""Architecture specs, shared initialisation and the prunable-parameter rule.

Prunable = the ``weight`` of every ``nn.Conv2d`` and ``nn.Linear`` (first and last layers included);
biases and normalisation parameters are never pruned. Graph layers hold their weight matrix in an
``nn.Linear``, so GNN weights are prunable by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from paibench.data.base import DatasetInfo
from paibench.options import Option, parse_options

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class ArchSpec:
    name: str
    kind: str  # "image" or "graph": the dataset kind it runs on
    build: Callable[..., nn.Module]  # build(info: DatasetInfo, width: float, **options)
    options: Mapping[str, Option] = field(default_factory=dict)
    description: str = ""

    def parse_options(self, raw: Mapping[str, Any], field_name: str = "arch") -> dict[str, Any]:
        return parse_options(self.options, raw, field_name)


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules owning a prunable weight, keyed by module name, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Prunable weights keyed by their parameter name (e.g. ``features.0.weight``)."""
    return {f"{name}.weight" if name else "weight": m.weight for name, m in prunable_modules(model).items()}


def kaiming_init(model: nn.Module) -> None:
    """Kaiming-normal conv/linear weights (fan-in, ReLU gain), zero biases, unit BN: the CIFAR papers' init."""
    for m in model.modules():
        if isinstance(m, PRUNABLE_TYPES):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def example_input(info: DatasetInfo, batch: int = 1, dtype=torch.float32, fill: float | None = 1.0):
    """A forward input for `info`: images (B, C, H, W), or a graph of `batch` self-looped nodes."""
    make = (lambda *s: torch.full(s, fill, dtype=dtype)) if fill is not None else (lambda *s: torch.randn(*s, dtype=dtype))
    if info.kind == "image":
        return (make(batch, info.channels, *info.size),)
    idx = torch.arange(batch)
    adj = torch.sparse_coo_tensor(torch.stack([idx, idx]), torch.ones(batch, dtype=dtype), (batch, batch)).coalesce()
    return (make(batch, info.num_features), adj)


def weight_uses(model: nn.Module, inputs: tuple) -> dict[str, int]:
    """How often each prunable weight is multiplied in one forward pass of `inputs` (one example: an image
    or a node), keyed by parameter name: a conv weight once per output position, a linear weight once per
    row it is applied to. A layer's multiply-accumulates are its (kept) weights times this number: the
    convention of SynFlow's and ShrinkBench's FLOP counts (biases, norms and activations not counted)."""
    names = {m: (f"{n}.weight" if n else "weight") for n, m in prunable_modules(model).items()}
    uses: dict[str, int] = {}

    def hook(module, _inputs, out):
        per_weight = out.numel() // module.weight.shape[0]  # Conv2d: B*H*W positions; Linear: rows
        uses[names[module]] = uses.get(names[module], 0) + int(per_weight)

    handles = [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {name: uses.get(name, 0) for name in names.values()}
