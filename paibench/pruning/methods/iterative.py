"""Progressive skeletonization (de Jorge et al., ICLR 2021; reference naver/force ``iterative_pruning``).

Both methods prune over T steps on the exponential keep schedule kept_t = total * density^(t/T), each
step on fresh class-balanced batches, with gradients taken at the currently masked weights w0 * m:

* ``force`` (prune_method=3): saliency |w0 * g| with the *dense* initial weights w0, for every weight,
  so a weight pruned earlier can come back when its gradient grows;
* ``iter_snip`` (prune_method=1): saliency |(w0 * m) * g|; pruned weights get the lowest saliency and
  never come back (the reference also zeroes their gradients with hooks).

Defaults follow the reference's command line (``--num_steps 10 --mode exp --num_batches 1``); its
README runs CIFAR with 60 steps and the paper reports 300.
"""

from __future__ import annotations

import torch

from paibench.options import Option
from paibench.pruning.core import Masks, MethodSpec, PruneContext, kept_for
from paibench.pruning.methods.saliency import (
    SAMPLES_PER_CLASS, average_gradients, budget_of, need_batches, rank_masks, seeded_rng, working_copy,
)


def progressive(ctx: PruneContext, force: bool) -> Masks:
    name = "force" if force else "iter_snip"
    batches = need_batches(ctx, name)
    steps = int(ctx.options.get("T", 10))
    num_batches = int(ctx.options.get("num_batches", 1))
    total = ctx.total
    with seeded_rng(ctx):
        net, params = working_copy(ctx)
        w0 = {n: p.detach().clone() for n, p in params.items()}
        masks: Masks | None = None
        for t in range(1, steps + 1):
            kept = ctx.target_kept if t == steps else kept_for(total, ctx.compression ** (t / steps))
            if masks is not None:
                with torch.no_grad():
                    for n, p in params.items():
                        p.copy_(w0[n] * masks[n])
            grads = average_gradients(net, params, batches(num_batches))
            scores = {}
            for n in params:
                if force:
                    s = (w0[n] * grads[n]).abs()
                else:
                    s = (params[n].detach() * grads[n]).abs()
                    if masks is not None:
                        s[~masks[n]] = -1.0  # below every live saliency: pruning is permanent
                scores[n] = s
            masks = rank_masks(scores, kept, "global")
    return {n: m.cpu() for n, m in masks.items()}


def force(ctx: PruneContext) -> Masks:
    return progressive(ctx, force=True)


def iter_snip(ctx: PruneContext) -> Masks:
    return progressive(ctx, force=False)


_OPTIONS = {
    "T": Option(int, 10, minimum=1, help="pruning steps on the exponential schedule (reference --num_steps)"),
    "num_batches": Option(int, 1, minimum=1, help="fresh batches whose gradients are averaged per step"),
    "samples_per_class": SAMPLES_PER_CLASS,
}

FORCE = MethodSpec("force", force, data_free=False, budget=budget_of(force), options=_OPTIONS,
                   description="FORCE: progressive skeletonization, |w0*g| at the masked weights, pruned weights may return")
ITER_SNIP = MethodSpec("iter_snip", iter_snip, data_free=False, budget=budget_of(iter_snip), options=_OPTIONS,
                       description="Iterative SNIP: progressive skeletonization with permanent pruning")
