"""Effective weights: those on at least one path from the input to the output of the masked network.

Definition (also in README): replace every kept prunable weight by 1 and every pruned one by 0, set
biases to 0 and normalisation layers to the identity, feed an all-ones input (images: one image with
zero padding around it as the model pads; graphs: one self-looped node, since feature reachability
does not depend on the graph), and binarise the output of every conv/linear layer to {0, 1}.

* A unit position is *reachable* if its binarised activation is 1 (some kept path reaches it).
* Backpropagating ``sum(output)`` with the binarised straight-through gradient marks the positions
  that can *reach* the output.
* A weight is effective iff it is kept and, at some spatial position, its input is reachable and its
  output can reach the output: exactly where ``grad(weight) > 0``.

This covers convolutions (a kernel tap that only ever multiplies padding gets no gradient), linear
layers, residual additions (a sum unions the paths), pooling and GNN aggregation, without any per-arch
code. Binarising keeps the numbers in {0, 1}, so no path count overflows in deep networks.
``collapsed`` is true when the output does not depend on the input at all.

Two named definitions (``DEFINITIONS``):

* ``paths`` (paibench's, the default): the above; a unit is live only if a kept path from the input
  reaches it.
* ``mica`` (the MiCA reference, Hikari43/minimum_connection_assurance ``set_effective_sparsity``): the
  reference measures the *trained* model and adds each BatchNorm's shift ``b - g*mu/sqrt(var+eps)`` and
  each layer bias, binarised, to the forward signal, so a channel whose shift is non-zero is live even
  when no kept weight feeds it. After training every shift and bias is non-zero, so at mask time the rule
  is: every normalised or biased unit is a source; only dead ends towards the output (and taps that see
  only padding) are removed. paibench computes it on the mask alone by setting every bias and norm shift
  to 1. Under this rule a mask is ``collapsed`` only when no kept weight reaches the output.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from paibench.models.base import example_input, prunable_types


class _Binarize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return (grad > 0).to(grad.dtype)


DEFINITIONS = ("paths", "mica")  # paibench's reachability rule; the MiCA reference's trained-model rule


def _connectivity_model(model: nn.Module, masks: dict[str, torch.Tensor], sources: bool = False) -> nn.Module:
    """Binarised copy of `model`; `sources`: every bias and norm shift is 1 (the ``mica`` definition)."""
    net = copy.deepcopy(model).cpu().double().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in masks:
                p.copy_(masks[name].to(p.dtype))
            elif name.endswith("bias"):
                p.fill_(1.0 if sources else 0.0)
            else:  # norm scales and any other factor: a positive constant keeps the zero pattern
                p.fill_(1.0)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    for m in net.modules():
        if isinstance(m, prunable_types()):
            m.register_forward_hook(lambda mod, inp, out: _Binarize.apply(out))
    return net




def effective_masks(model: nn.Module, masks: dict[str, torch.Tensor], info,
                    definition: str = "paths") -> tuple[dict[str, torch.Tensor], bool]:
    """Return (effective mask per prunable parameter, collapsed) for `masks` applied to `model`.

    `definition`: ``paths`` or ``mica`` (module docstring). Under ``mica`` the output is never constant
    zero (biases are sources), so collapse is read from the weights: no kept weight reaches the output.
    """
    if definition not in DEFINITIONS:
        raise ValueError(f"effective definition {definition!r}; expected one of {DEFINITIONS}")
    sources = definition == "mica"
    net = _connectivity_model(model, masks, sources=sources)
    params = dict(net.named_parameters())
    for p in net.parameters():
        p.requires_grad_(False)
    for name in masks:
        params[name].requires_grad_(True)
    inputs = example_input(info, batch=1, dtype=torch.float64)
    with torch.enable_grad():
        out = net(*inputs)
        total = out.sum()
        if not sources and total.item() == 0:
            return {name: torch.zeros_like(m, dtype=torch.bool) for name, m in masks.items()}, True
        total.backward()
    eff = {}
    for name, m in masks.items():
        grad = params[name].grad
        eff[name] = m.bool() & (grad > 0) if grad is not None else torch.zeros_like(m, dtype=torch.bool)
    if sources:
        return eff, not any(bool(e.any()) for e in eff.values())
    return eff, False
