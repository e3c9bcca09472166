"""Architecture specs, shared initialisation and the prunable-parameter rule.

Prunable = the ``weight`` of every ``nn.Conv2d`` and ``nn.Linear`` (first and last layers included);
biases and normalisation parameters are never pruned. Graph layers hold their weight matrix in an
``nn.Linear``, so GNN weights are prunable by the same rule.
"""

from __future__ import annotations

from paibench.data.base import DatasetInfo
from paibench.lazy import nn, torch  # imported when first used (no torch to read a config)
from paibench.models.spec import ArchSpec  # noqa: F401 (its old home; plug-ins import it from here)


def prunable_types() -> tuple[type, ...]:
    """The module types whose ``weight`` is prunable."""
    return (nn.Conv2d, nn.Linear)


def __getattr__(name: str):
    if name == "PRUNABLE_TYPES":  # a constant once; a function now so that importing this module needs no torch
        return prunable_types()
    raise AttributeError(f"module 'paibench.models.base' has no attribute {name!r}")


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules owning a prunable weight, keyed by module name, in registration order."""
    types = prunable_types()
    return {name: m for name, m in model.named_modules() if isinstance(m, types)}


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Prunable weights keyed by their parameter name (e.g. ``features.0.weight``)."""
    return {f"{name}.weight" if name else "weight": m.weight for name, m in prunable_modules(model).items()}


def kaiming_init(model: nn.Module) -> None:
    """Kaiming-normal conv/linear weights (fan-in, ReLU gain), zero biases, unit BN: the CIFAR papers' init."""
    for m in model.modules():
        if isinstance(m, prunable_types()):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def example_input(info: DatasetInfo, batch: int = 1, dtype=None, fill: float | None = 1.0):
    """A forward input for `info` (float32 unless `dtype` is given): its task's (paibench.tasks)."""
    from paibench.tasks import task_for

    return task_for(info.kind).example_input(info, batch, dtype, fill)


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
