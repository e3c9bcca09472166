"""Progressive skeletonization (de Jorge et al., ICLR 2021; reference naver/force ``iterative_pruning``).

Both methods prune over T steps on the exponential keep schedule kept_t = total * density^(t/T), each
step on fresh class-balanced batches, with gradients taken at the currently masked weights w0 * m:

* ``force`` (prune_method=3): saliency |w0 * g| with the *dense* initial weights w0, for every weight,
  so a weight pruned earlier can come back when its gradient grows;
* ``iter_snip`` (prune_method=1): saliency |(w0 * m) * g|; pruned weights get the lowest saliency and
  never come back (the reference also zeroes their gradients with hooks).

Defaults follow the reference's command line (``--num_steps 10 --mode exp --num_batches 1``); its
README runs CIFAR with 60 steps and the paper reports 300. Options that change the mask and their
reference values: ``loss=nll_logits`` (its gradients come from ``F.nll_loss`` on raw logits),
``batching=random batch_size=128 augment=true`` (one fresh batch of its shuffled, augmented training
loader per step), ``schedule=exp|linear`` (its ``--mode``), ``num_batches=-1`` (a pass over the training
split), ``score_mode=train`` (the network it scores is in train mode). paibench's defaults (cross-entropy,
class-balanced batches) are kept for comparability with SNIP and GraSP, which score the same way.
"""

from __future__ import annotations


from paibench.lazy import torch  # imported when first used (no torch to read a config)
from paibench.options import Option
from paibench.pruning.core import Masks, MethodSpec, PruneContext, kept_for
from paibench.pruning.methods.saliency import (
    BATCHING_OPTIONS, NUM_BATCHES, SCORE_MODE, average_gradients, batch_count, budget_of, need_batches, rank_masks,
    seeded_rng, working_copy,
)


def keep_schedule(total: int, compression: float, steps: int, schedule: str) -> list[int]:
    """Kept weights after each of `steps` steps; the last is exactly kept_for(total, compression).

    exp: total * density^(t/T) (reference ``mode='exp'``); linear: total * (1 - t(1 - density)/T)
    (reference ``mode='linear'``).
    """
    density = 1.0 / compression
    out = []
    for t in range(1, steps + 1):
        if t == steps:
            out.append(kept_for(total, compression))
        elif schedule == "linear":
            out.append(kept_for(total, 1.0 / (1.0 - t * (1.0 - density) / steps)))
        else:
            out.append(kept_for(total, compression ** (t / steps)))
    return out


def progressive(ctx: PruneContext, force: bool) -> Masks:
    name = "force" if force else "iter_snip"
    batches = need_batches(ctx, name)
    opts = {k: ctx.options.get(k, opt.default) for k, opt in _OPTIONS.items()}  # defaults declared once, below
    steps = int(opts["T"])
    num_batches = batch_count(ctx, batches)
    loss = opts["loss"]
    with seeded_rng(ctx):
        net, params = working_copy(ctx)
        w0 = {n: p.detach().clone() for n, p in params.items()}
        masks: Masks | None = None
        for kept in keep_schedule(ctx.total, ctx.compression, steps, opts["schedule"]):
            if masks is not None:
                with torch.no_grad():
                    for n, p in params.items():
                        p.copy_(w0[n] * masks[n])
            grads = average_gradients(net, params, batches(num_batches), loss)
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
    "T": Option(int, 10, minimum=1, help="pruning steps (reference --num_steps)"),
    "num_batches": NUM_BATCHES,
    **BATCHING_OPTIONS,
    "score_mode": SCORE_MODE,
    "schedule": Option(str, "exp", choices=("exp", "linear"), omit_default=True,
                       help="keep schedule over the T steps (reference --mode)"),
    "loss": Option(str, "ce", choices=("ce", "nll_logits"), omit_default=True,
                   help="ce: cross-entropy; nll_logits: F.nll_loss on raw logits, the gradient of -z_y (naver/force)"),
}

FORCE = MethodSpec("force", force, data_free=False, budget=budget_of(force), options=_OPTIONS,
                   description="FORCE: progressive skeletonization, |w0*g| at the masked weights, pruned weights may return")
ITER_SNIP = MethodSpec("iter_snip", iter_snip, data_free=False, budget=budget_of(iter_snip), options=_OPTIONS,
                       description="Iterative SNIP: progressive skeletonization with permanent pruning")
