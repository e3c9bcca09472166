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
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from paibench.models.base import PRUNABLE_TYPES, example_input


class _Binarize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return (grad > 0).to(grad.dtype)


def _connectivity_model(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    net = copy.deepcopy(model).cpu().double().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in masks:
                p.copy_(masks[name].to(p.dtype))
            elif name.endswith("bias"):
                p.zero_()
            else:  # norm scales and any other factor: a positive constant keeps the zero pattern
                p.fill_(1.0)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    for m in net.modules():
        if isinstance(m, PRUNABLE_TYPES):
            m.register_forward_hook(lambda mod, inp, out: _Binarize.apply(out))
    return net




def effective_masks(model: nn.Module, masks: dict[str, torch.Tensor], info) -> tuple[dict[str, torch.Tensor], bool]:
    """Return (effective mask per prunable parameter, collapsed) for `masks` applied to `model`."""
    net = _connectivity_model(model, masks)
    params = dict(net.named_parameters())
    for p in net.parameters():
        p.requires_grad_(False)
    for name in masks:
        params[name].requires_grad_(True)
    inputs = example_input(info, batch=1, dtype=torch.float64)
    with torch.enable_grad():
        out = net(*inputs)
        total = out.sum()
        if total.item() == 0:
            return {name: torch.zeros_like(m, dtype=torch.bool) for name, m in masks.items()}, True
        total.backward()
    eff = {}
    for name, m in masks.items():
        grad = params[name].grad
        eff[name] = m.bool() & (grad > 0) if grad is not None else torch.zeros_like(m, dtype=torch.bool)
    return eff, False
