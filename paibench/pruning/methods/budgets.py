"""Data-free layer budgets with random placement: Erdos-Renyi (ER) and Ideal Gas Quotas (IGQ).

ER (Mocanu et al. 2018; RigL's sparse_utils without the kernel term): a layer's density is
proportional to (fan_in + fan_out) / (fan_in * fan_out), with RigL's "dense if it would exceed 1"
redistribution (``erk_densities(kernel=False)``).

IGQ (Vysogorets & Kempe, "Connectivity matters: neural network pruning through the lens of effective
sparsity", JMLR 2023; reference avysogorets/effective-sparsity ``igq_quotas``): layers are gas-filled
cylinders of length N_l (weights) and cross-section 1/N_l pushed by one common force F; a layer keeps
N_l / (F * N_l + 1) weights. F is found by bisection so the kept total matches the target. Large layers
are pruned hardest, every layer keeps at most its size and, at extreme sparsity, about 1/F weights, so
no layer is emptied first.
"""

from __future__ import annotations

import math

from paibench.pruning.core import MethodSpec, PruneContext, allocate, budget_method, numels
from paibench.pruning.methods.basic import erk_densities


def er_budget(ctx: PruneContext) -> dict[str, int]:
    shapes = {n: p.shape for n, p in ctx.params.items()}
    sizes = numels(ctx.params)
    dens = erk_densities(shapes, ctx.target_kept / ctx.total, 1.0, kernel=False)
    return allocate(sizes, {n: dens[n] * sizes[n] for n in sizes}, ctx.target_kept)


def igq_kept(sizes: dict[str, int], target: float) -> dict[str, float]:
    """Real-valued IGQ quotas N_l / (F N_l + 1) whose sum equals `target` (0 < target <= total)."""
    total = sum(sizes.values())
    if target >= total:
        return {n: float(s) for n, s in sizes.items()}

    def kept(force: float) -> float:
        return sum(s / (force * s + 1.0) for s in sizes.values())

    # kept(F) decreases from total (F=0) towards len(sizes)/F; bracket the root, then bisect on log F.
    lo, hi = 1e-30, 1.0
    while kept(hi) > target:
        hi *= 2.0
    while kept(lo) < target:
        lo /= 2.0
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if kept(mid) > target:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-13:
            break
    force = math.sqrt(lo * hi)
    return {n: s / (force * s + 1.0) for n, s in sizes.items()}


def igq_budget(ctx: PruneContext) -> dict[str, int]:
    sizes = numels(ctx.params)
    quotas = igq_kept(sizes, ctx.target_kept)
    # allocate() turns the real quotas into exact integer counts (largest remainder, capped at size).
    return allocate(sizes, quotas, ctx.target_kept)


ER = MethodSpec("er", budget_method(er_budget), data_free=True, budget=er_budget,
                description="Erdos-Renyi layer densities ((fan_in+fan_out)/(fan_in*fan_out), no kernel term), "
                            "exact counts, random positions")
IGQ = MethodSpec("igq", budget_method(igq_budget), data_free=True, budget=igq_budget,
                 description="Ideal Gas Quotas (Vysogorets & Kempe): layer l keeps N_l/(F*N_l+1), F bisected "
                             "to the target; exact counts, random positions")
