"""Which prunable layer feeds which, found generically from the autograd graph of one forward pass.

``layer_graph(model, info)`` runs the model once on ``example_input`` with gradients enabled and records,
for every prunable module (``Conv2d``/``Linear``), the autograd node of its output. Walking the autograd
graph backwards from each prunable module's *input* until another prunable output (or the network input)
is met gives that layer's producers; non-prunable operations in between (norms, activations, pooling,
flatten, residual additions, sparse graph aggregation) are transparent. A residual addition therefore
makes a layer the consumer of every layer whose output is summed into its input: the union of paths.

No tracing is involved, so any model that runs forward works (VGG, CIFAR ResNets with or without
shortcuts, bottleneck ResNets, WRN, GCN/GIN...). Limits, documented for MiCA which relies on this:

* Units are taken to be *channels* (dim 1 of the weight); a ``Linear`` fed by a flattened spatial map
  (no global pooling) sees features, not channels, so channel counts passed across it are only upper
  bounds. Concatenation (DenseNet-style) is treated as if every concatenated producer fed all inputs.
* A module called several times in one forward (weight sharing) is described by its first call.
* Producers are found through autograd, so a path that carries no gradient (``.detach()``, integer
  indexing of the input) is invisible.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field


from paibench.lazy import torch, nn  # imported when first used (no torch to read a config)
from paibench.models.base import example_input, prunable_modules

INPUT = "<input>"
OUTPUT = "<output>"


@dataclass
class LayerNode:
    name: str  # prunable parameter name, e.g. "features.0.weight"
    module_name: str
    order: int  # position in execution order
    producers: set[str] = field(default_factory=set)  # parameter names or INPUT
    consumers: set[str] = field(default_factory=set)  # parameter names or OUTPUT


@dataclass
class LayerGraph:
    layers: dict[str, LayerNode]  # in execution order
    output_units: int  # size of the last dimension of the network output (classes)

    def execution_order(self) -> list[str]:
        return sorted(self.layers, key=lambda n: self.layers[n].order)


def _walk(start, stop: dict, input_tensors: list[torch.Tensor]) -> set[str]:
    """Names of the prunable outputs (or INPUT) reached backwards from autograd node `start`."""
    found: set[str] = set()
    seen: set[int] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node in stop:
            found.add(stop[node])
            continue
        var = getattr(node, "variable", None)  # AccumulateGrad: a leaf
        if var is not None:
            if any(var is t for t in input_tensors):
                found.add(INPUT)
            continue
        stack.extend(fn for fn, _ in node.next_functions)
    return found


def layer_graph(model: nn.Module, info) -> LayerGraph:
    net = copy.deepcopy(model).cpu().double().eval()
    mods = prunable_modules(net)
    pname = {m: (f"{n}.weight" if n else "weight") for n, m in mods.items()}
    mname = {m: n for n, m in mods.items()}
    out_node: dict = {}  # autograd node of a prunable output -> parameter name
    in_info: dict[str, tuple] = {}  # parameter name -> (input grad_fn, input tensor)
    order: list[str] = []

    def pre(mod, args):
        name = pname[mod]
        if name not in in_info:
            order.append(name)
            in_info[name] = (args[0].grad_fn, args[0])

    def post(mod, args, out):
        if out.grad_fn is not None and out.grad_fn not in out_node:
            out_node[out.grad_fn] = pname[mod]

    handles = [m.register_forward_pre_hook(pre) for m in mods.values()]
    handles += [m.register_forward_hook(post) for m in mods.values()]
    inputs = example_input(info, batch=1, dtype=torch.float64)
    inputs = (inputs[0].clone().requires_grad_(True),) + tuple(inputs[1:])
    try:
        with torch.enable_grad():
            out = net(*inputs)
    finally:
        for h in handles:
            h.remove()
    nodes = {name: LayerNode(name, mname[next(m for m, p in pname.items() if p == name)], i)
             for i, name in enumerate(order)}
    leaf = [inputs[0]]
    for name in order:
        fn, tensor = in_info[name]
        if fn is None:
            nodes[name].producers = {INPUT} if any(tensor is t for t in leaf) else set()
        else:
            nodes[name].producers = _walk(fn, out_node, leaf)
    for name in order:
        for p in nodes[name].producers:
            if p in nodes:
                nodes[p].consumers.add(name)
    for p in _walk(out.grad_fn, out_node, leaf):
        if p in nodes:
            nodes[p].consumers.add(OUTPUT)
    return LayerGraph(nodes, int(out.shape[-1]))


def input_reach(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Which weight columns (flattened ``in_channels/groups x kernel``) see a reachable input somewhere.

    For a conv this is padding-aware: a kernel tap counts only if, at some output position, it lies on
    a nonzero input rather than on padding. ``x`` is the (binary) reachability of the module's input.
    """
    xb = (x.detach() > 0).to(torch.float64)
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise NotImplementedError(f"padding_mode={module.padding_mode!r}")
        w = module.weight
        with torch.enable_grad():
            ones = torch.ones((1,) + tuple(w.shape[1:]), dtype=torch.float64, requires_grad=True)
            # Summed input patch under every tap = gradient of sum(conv(x, ones)) w.r.t. the kernel.
            per_group = []
            cin_g = w.shape[1]
            for g in range(module.groups):
                xg = xb[:, g * cin_g:(g + 1) * cin_g]
                y = torch.nn.functional.conv2d(xg, ones, None, module.stride, module.padding, module.dilation)
                (grad,) = torch.autograd.grad(y.sum(), ones)
                per_group.append(grad[0])
        deg = torch.stack(per_group).sum(0) if module.groups > 1 else per_group[0]
        return (deg > 0).flatten()
    if isinstance(module, nn.Linear):
        return (xb.reshape(-1, xb.shape[-1]) > 0).any(dim=0)
    raise TypeError(f"not a prunable module: {type(module).__name__}")


__all__ = ["INPUT", "OUTPUT", "LayerGraph", "LayerNode", "layer_graph", "input_reach"]
