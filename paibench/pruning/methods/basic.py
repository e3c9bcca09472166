"""Data-free layer budgets: dense, uniform random, ERK (Evci et al. 2020, RigL's sparse_utils)."""

from __future__ import annotations

import math


from paibench.lazy import torch  # imported when first used (no torch to read a config)
from paibench import names
from paibench.options import Option
from paibench.pruning.core import MethodSpec, PruneContext, allocate, budget_method, numels


def dense(ctx: PruneContext):
    return {name: torch.ones(p.shape, dtype=torch.bool) for name, p in ctx.params.items()}


def uniform_budget(ctx: PruneContext) -> dict[str, int]:
    """The same density in every layer (counts exact, total exact)."""
    sizes = numels(ctx.params)
    return allocate(sizes, {n: float(v) for n, v in sizes.items()}, ctx.target_kept)


def erk_densities(shapes: dict[str, torch.Size], density: float, power: float = 1.0, kernel: bool = True) -> dict[str, float]:
    """Erdos-Renyi(-Kernel) densities with RigL's iterative redistribution.

    A layer's raw score is sum(shape)/prod(shape) (ER: fan-in + fan-out over their product, ignoring the
    kernel). One scale eps makes the kept total match; any layer whose density would exceed 1 is made
    dense and eps is solved again for the rest, until no layer exceeds 1.
    """
    def raw(shape):
        dims = list(shape) if kernel else list(shape[:2])
        return (sum(dims) / math.prod(dims)) ** power

    dense_layers: set[str] = set()
    while True:
        rhs, divisor = 0.0, 0.0
        scores = {}
        for name, shape in shapes.items():
            n = math.prod(shape)
            if name in dense_layers:
                rhs -= n * (1 - density)
            else:
                rhs += n * density
                scores[name] = raw(shape)
                divisor += scores[name] * n
        if not scores:
            return {name: 1.0 for name in shapes}
        eps = rhs / divisor
        worst = max(scores.values())
        if worst * eps > 1:
            dense_layers.update(n for n, s in scores.items() if s == worst)
            continue
        return {name: 1.0 if name in dense_layers else eps * scores[name] for name in shapes}


def erk_budget(ctx: PruneContext) -> dict[str, int]:
    shapes = {n: p.shape for n, p in ctx.params.items()}
    sizes = numels(ctx.params)
    dens = erk_densities(shapes, ctx.target_kept / ctx.total, ctx.options["power"], kernel=True)
    return allocate(sizes, {n: dens[n] * sizes[n] for n in sizes}, ctx.target_kept)


DENSE = MethodSpec(names.DENSE, dense, data_free=True, prunes=False, description="no pruning (compression 1)")
RANDOM = MethodSpec("random", budget_method(uniform_budget), data_free=True, budget=uniform_budget,
                    description="uniform density per layer, exact counts, random positions")
ERK = MethodSpec("erk", budget_method(erk_budget), data_free=True, budget=erk_budget,
                 options={"power": Option(float, 1.0, minimum=0.0, help="erk_power_scale of RigL")},
                 description="Erdos-Renyi-Kernel layer densities, random positions")
