"""Single-shot ranking methods: magnitude, SNIP, GraSP, SynFlow.

Each method scores every prunable weight and keeps the `target_kept` best, globally by default or with
the same density in every layer (``scope=layer``). Scores are computed on a private copy of the model,
so the run's initial weights and BN statistics are never touched. Data-dependent methods run the copy
in train mode (as the references do) under a global RNG seeded from ``ctx.generator``, so dropout in
e.g. the GCN is reproducible and the same seed gives the same mask.

References: SNIP (Lee et al., ICLR 2019; mi-lad/snip, ganguli-lab/Synaptic-Flow ``SNIP``); GraSP
(Wang et al., ICLR 2020; alecwangcq/GraSP ``pruner/GraSP.py``); SynFlow (Tanaka et al., NeurIPS 2020;
ganguli-lab/Synaptic-Flow ``SynFlow`` and ``prune_loop``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Callable, Iterable, Mapping


from paibench.lazy import torch, nn, F  # imported when first used (no torch to read a config)
from paibench.errors import PaibenchError
from paibench.models.base import example_input, prunable_parameters
from paibench.options import Option
from paibench.pruning.core import Masks, MethodSpec, PruneContext, allocate, kept_for

log = logging.getLogger(__name__)

Scores = dict[str, "torch.Tensor"]  # parameter name -> saliency per weight

SCOPE = Option(str, "global", choices=("global", "layer"),
               help="global: one threshold over all layers; layer: the same density in every layer")
SAMPLES_PER_CLASS = Option(int, 10, minimum=1, help="class-balanced sample: images of every class per batch")
SCORE_MODE = Option(str, "train", choices=("train", "eval"), omit_default=True,
                    help="mode of the scored network: train (batch statistics, dropout on; naver/force) or eval "
                         "(running statistics, i.e. BatchNorm is the identity at init; Synaptic-Flow and MiCA)")
NUM_BATCHES = Option(int, 1, minimum=-1, forbidden=(0,),
                     help="fresh batches whose gradients are averaged (-1: one pass over the training split)")
# How pruning batches are drawn (paibench.pruning.pruning_batches): per_class (default) draws
# samples_per_class images of every class; random draws batch_size images uniformly, augmented as in
# training when augment is true (naver/force: one batch of its shuffled, augmented training loader).
BATCHING_OPTIONS = {
    "samples_per_class": SAMPLES_PER_CLASS,
    "batching": Option(str, "per_class", choices=("per_class", "random"), omit_default=True,
                       help="per_class: samples_per_class images of every class; random: batch_size random "
                            "training images (naver/force)"),
    "batch_size": Option(int, 128, minimum=1, omit_default=True, help="batching=random: images per batch"),
    "augment": Option(bool, True, omit_default=True, help="batching=random: the dataset's training augmentation"),
}


# ---------------------------------------------------------------------------------------------------
# exact top-k (same result as core.top_k_masks, in O(n) instead of a full sort)
# ---------------------------------------------------------------------------------------------------

_SAMPLE = 1 << 16  # entries in the strided sample that brackets the threshold
_DIRECT = 1 << 20  # below this size kthvalue on everything is as fast as bracketing


def _kth_largest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of `flat` (1 <= k <= n), exactly.

    Large inputs: a strided sample brackets the answer between two of its values (lo, hi); counting
    entries against them proves the bracket, and kthvalue then runs only on the entries inside it.
    The sample only decides how much work is done, never the answer: a bracket that fails its counts
    falls back to kthvalue on everything. A fixed stride keeps the work deterministic too.
    """
    n = flat.numel()
    if n <= _DIRECT:
        return torch.kthvalue(flat, n - k + 1).values
    sample = torch.sort(flat[:: n // _SAMPLE], descending=True).values
    m = sample.numel()
    pos = k * m / n  # where the threshold falls in the sorted sample
    slack = 4.0 * (pos * (1 - pos / m)) ** 0.5 + 8  # ~4 sigma of a binomial count, plus a margin
    hi = sample[max(int(pos - slack), 0)]
    lo = sample[min(int(pos + slack), m - 1)]
    # the threshold is <= hi iff fewer than k entries exceed hi (count_nonzero: a bool .sum() is ~6x slower)
    above = int(torch.count_nonzero(flat > hi))
    inside = flat >= lo
    inside &= flat <= hi
    band = flat.index_select(0, inside.nonzero().squeeze(1))  # (masked_select is ~5x slower on CPU)
    rank = k - above  # the threshold's rank from the top inside the band
    if above >= k or rank > band.numel():  # bracket missed (skewed sample): do it the slow way
        return torch.kthvalue(flat, n - k + 1).values
    return torch.kthvalue(band, band.numel() - rank + 1).values


def _top_k_flat(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k largest entries; ties at the threshold go to the lowest positions.

    Identical to taking the first k of a stable descending sort (core.top_k_masks), in O(n): SynFlow and
    FORCE re-threshold tens of millions of scores every round, where a sort would dominate.
    """
    n = flat.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=flat.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=flat.device)
    thr = _kth_largest(flat, k)
    keep = flat >= thr
    if int(torch.count_nonzero(keep)) == k:  # the threshold value is unique: no ties to break
        return keep
    keep = flat > thr
    need = k - int(torch.count_nonzero(keep))
    keep[torch.nonzero(flat == thr).flatten()[:need]] = True
    return keep


def rank_masks(scores: Mapping[str, torch.Tensor], kept: int, scope: str = "global") -> Masks:
    """Keep the `kept` highest scores (globally, or per layer at equal density); exact counts.

    The masks stay on the scores' device (no host round trip per step of an iterative method on a GPU).
    """
    cpu = {n: s.detach().flatten().double() for n, s in scores.items()}
    if scope == "layer":
        sizes = {n: s.numel() for n, s in cpu.items()}
        counts = allocate(sizes, {n: float(v) for n, v in sizes.items()}, kept)
        return {n: _top_k_flat(cpu[n], counts[n]).view(scores[n].shape) for n in scores}
    keep = _top_k_flat(torch.cat(list(cpu.values())), kept)
    out, offset = {}, 0
    for n, s in scores.items():
        out[n] = keep[offset: offset + s.numel()].view(s.shape)
        offset += s.numel()
    return out


# ---------------------------------------------------------------------------------------------------
# shared helpers for data-dependent scores
# ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def seeded_rng(ctx: PruneContext):
    """Seed torch's global RNG (dropout) from the method's generator, restoring it afterwards."""
    seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
    devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def working_copy(ctx: PruneContext) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """A private copy of the model on the method's device, in the ``score_mode`` the options ask for."""
    net = copy.deepcopy(ctx.model).to(ctx.device)
    net.train(ctx.options["score_mode"] == "train")
    net.zero_grad(set_to_none=True)
    return net, prunable_parameters(net)


def batch_count(ctx: PruneContext, batches) -> int:
    """``num_batches``, with -1 meaning one pass worth of batches over the training split."""
    n = int(ctx.options["num_batches"])
    return int(getattr(batches, "per_epoch", 1)) if n == -1 else n


def need_batches(ctx: PruneContext, method: str):
    if ctx.batches is None:
        from paibench.errors import PaibenchError

        raise PaibenchError(f"--data: method {method!r} needs data; pass the prepared dataset file with --data")
    return ctx.batches


def loss_of(net: nn.Module, batch, loss: str = "ce") -> torch.Tensor:
    """`ce`: cross-entropy. `nll_logits`: F.nll_loss on the raw logits, i.e. the mean of -z_y, as
    naver/force's get_average_gradients computes it (its models return logits, no log-softmax)."""
    inputs, targets = batch
    out = net(*inputs)
    # ignore_index=-100 (the default) drops the non-training nodes of graph batches
    if loss == "nll_logits":
        return F.nll_loss(out, targets, ignore_index=-100)
    return F.cross_entropy(out, targets, ignore_index=-100)


def average_gradients(net: nn.Module, params: Mapping[str, nn.Parameter], batches: Iterable,
                      loss: str = "ce") -> Scores:
    """Mean over `batches` of dL/dw for every prunable weight (FORCE's get_average_gradients)."""
    total: Scores = {}
    count = 0
    for batch in batches:
        grads = torch.autograd.grad(loss_of(net, batch, loss), list(params.values()), allow_unused=True)
        for (n, p), g in zip(params.items(), grads):
            g = torch.zeros_like(p) if g is None else g
            total[n] = total[n] + g if n in total else g.detach().clone()
        count += 1
    return {n: g / count for n, g in total.items()}


def _scope(ctx: PruneContext) -> str:
    return ctx.options["scope"]


def ranking_method(score_fn: Callable[[PruneContext], Scores]) -> Callable[[PruneContext], Masks]:
    def method(ctx: PruneContext) -> Masks:
        return {n: m.cpu() for n, m in rank_masks(score_fn(ctx), ctx.target_kept, _scope(ctx)).items()}

    return method


def budget_of(fn: Callable[[PruneContext], Masks]) -> Callable[[PruneContext], dict[str, int]]:
    """Per-layer kept counts of a method's own mask (deterministic: same ctx state, same counts)."""
    return lambda ctx: {n: int(m.sum()) for n, m in fn(ctx).items()}


# ---------------------------------------------------------------------------------------------------
# the four scores
# ---------------------------------------------------------------------------------------------------

def magnitude_scores(ctx: PruneContext) -> Scores:
    return {n: p.detach().abs() for n, p in ctx.params.items()}


def snip_scores(ctx: PruneContext) -> Scores:
    """|dL/dm| at m = 1, which equals |w * dL/dw| (gradients averaged over `num_batches` batches)."""
    batches = need_batches(ctx, "snip")
    with seeded_rng(ctx):
        net, params = working_copy(ctx)
        grads = average_gradients(net, params, batches(batch_count(ctx, batches)))
    return {n: (params[n].detach() * grads[n]).abs() for n in params}


def _halves(batch):
    """GraSP's reference splits each class-balanced sample into two halves; graphs stay whole."""
    inputs, targets = batch
    if len(inputs) == 1 and inputs[0].shape[0] == targets.shape[0] and targets.shape[0] >= 2:
        half = targets.shape[0] // 2
        return [((inputs[0][:half],), targets[:half]), ((inputs[0][half:],), targets[half:])]
    return [batch]


def grasp_scores(ctx: PruneContext) -> Scores:
    """GraSP's score S = -theta * Hg (temperature T on the logits); the mask removes the highest S."""
    batches = need_batches(ctx, "grasp")
    temp = float(ctx.options["temperature"])
    with seeded_rng(ctx):
        net, params = working_copy(ctx)
        weights = list(params.values())
        parts = [part for batch in batches(int(ctx.options["num_iters"])) for part in _halves(batch)]

        def tempered_loss(part):
            inputs, targets = part
            return F.cross_entropy(net(*inputs) / temp, targets, ignore_index=-100)

        # g: the (stopped) gradient summed over all parts
        stopped = [torch.zeros_like(w) for w in weights]
        for part in parts:
            for acc, g in zip(stopped, torch.autograd.grad(tempered_loss(part), weights, allow_unused=True)):
                if g is not None:
                    acc += g.detach()
        # Hg = d(g_stopped . grad L)/dw, accumulated over the same parts
        for part in parts:
            grads = torch.autograd.grad(tempered_loss(part), weights, create_graph=True, allow_unused=True)
            z = sum((s * g).sum() for s, g in zip(stopped, grads) if g is not None)
            z.backward()
        return {n: -(p.detach() * (p.grad if p.grad is not None else torch.zeros_like(p))) for n, p in params.items()}


def grasp(ctx: PruneContext) -> Masks:
    # "remove the highest scores": keep the lowest -theta*Hg, i.e. the highest theta*Hg
    masks = rank_masks({n: -s for n, s in grasp_scores(ctx).items()}, ctx.target_kept, _scope(ctx))
    return {n: m.cpu() for n, m in masks.items()}


class _Float32Overflow(Exception):
    """R = sum(output) of the linearised network is not a finite positive float32 number."""


def _linearised_copy(ctx: PruneContext, dtype: torch.dtype) -> nn.Module:
    """eval mode, |every parameter and buffer|, in `dtype`; the copy is thrown away, so no sign restore is needed."""
    net = copy.deepcopy(ctx.model).to(device=ctx.device, dtype=dtype).eval()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def synflow(ctx: PruneContext) -> Masks:
    """Iterative SynFlow: |theta|, eval mode, all-ones input, R = sum(output), score |theta * dR/dtheta|.

    Precision: the reference computes in float32 (its `model.double()` is commented out), which is exact
    enough for VGG/ResNet-20 but overflows on deep or wide networks (R is ~1e72 for ResNet-50, ~1e45 for
    WRN-28-10 at init). `auto` (default) runs float32 and restarts in float64 when R stops being a finite
    positive float32 in any round; `float32` then fails with an error instead, `float64` always uses it.
    """
    precision = ctx.options["precision"]
    if precision == "float64":
        return _synflow(ctx, torch.float64)
    try:
        return _synflow(ctx, torch.float32, check=True)
    except _Float32Overflow as exc:
        if precision == "float32":
            raise PaibenchError(f"precision: {exc}; use --opt precision=float64 (or auto)") from None
        log.info("synflow: %s; recomputing in float64", exc)
        return _synflow(ctx, torch.float64)


def _synflow(ctx: PruneContext, dtype: torch.dtype, check: bool = False) -> Masks:
    """Round r of `rounds` keeps total * density^(r/rounds) weights (the exponential schedule); pruned weights
    are zeroed and stay pruned (only live weights are ranked). Exact counts, ties to the lowest position.
    Work outside the forward/backward pass is O(live weights), which shrinks geometrically.
    """
    rounds = int(ctx.options["rounds"])
    scope = _scope(ctx)
    net = _linearised_copy(ctx, dtype)
    params = prunable_parameters(net)
    names = list(params)
    weights = [params[n] for n in names]
    for p in weights:
        p.requires_grad_(True)
    flat_w = [p.data.view(-1) for p in weights]  # views: zeroing an entry prunes it in the network
    sizes = {n: p.numel() for n, p in zip(names, weights)}
    live = [torch.arange(p.numel(), device=p.device) for p in weights]  # ascending kept positions per layer
    inputs = tuple(t.to(ctx.device) for t in example_input(ctx.info, batch=1, dtype=dtype))
    total = ctx.total
    for r in range(1, rounds + 1):
        kept = ctx.target_kept if r == rounds else kept_for(total, ctx.compression ** (r / rounds))
        flow = net(*inputs).sum()
        if check and not (0.0 < (value := float(flow.detach())) < float("inf")):
            raise _Float32Overflow(f"R = {value} in float32 at round {r}")
        grads = torch.autograd.grad(flow, weights)
        with torch.no_grad():
            scores = [(g.view(-1).index_select(0, idx) * w.index_select(0, idx)).abs_()
                      for g, w, idx in zip(grads, flat_w, live)]
            if scope == "layer":
                counts = allocate(sizes, {n: float(v) for n, v in sizes.items()}, kept)
                keeps = [_top_k_flat(s, min(counts[n], s.numel())) for n, s in zip(names, scores)]
            else:
                keeps = _top_k_flat(torch.cat(scores), kept).split([s.numel() for s in scores])
            for i, k in enumerate(keeps):
                if bool(k.all()):
                    continue
                flat_w[i].index_fill_(0, live[i][~k], 0.0)
                live[i] = live[i][k]
    masks = {}
    for n, p, idx in zip(names, weights, live):
        m = torch.zeros(p.numel(), dtype=torch.bool)
        m[idx.cpu()] = True
        masks[n] = m.view(p.shape)
    return masks


magnitude = ranking_method(magnitude_scores)
snip = ranking_method(snip_scores)

MAGNITUDE = MethodSpec("magnitude", magnitude, data_free=True, budget=budget_of(magnitude),
                       options={"scope": SCOPE},
                       description="keep the largest |w| of the initial weights")
SNIP = MethodSpec("snip", snip, data_free=False, budget=budget_of(snip),
                  options={"scope": SCOPE, **BATCHING_OPTIONS, "num_batches": NUM_BATCHES, "score_mode": SCORE_MODE},
                  description="SNIP: keep the largest |dL/dm| = |w * dL/dw| on a class-balanced sample")
GRASP = MethodSpec("grasp", grasp, data_free=False, budget=budget_of(grasp),
                   options={"scope": SCOPE, **BATCHING_OPTIONS, "score_mode": SCORE_MODE,
                            "num_iters": Option(int, 1, minimum=1, help="class-balanced samples drawn (reference num_iters)"),
                            "temperature": Option(float, 200.0, minimum=1e-6, help="logits are divided by T")},
                   description="GraSP: score -theta*Hg at temperature T=200, remove the highest scores")
SYNFLOW = MethodSpec("synflow", synflow, data_free=True, budget=budget_of(synflow),
                     options={"scope": SCOPE,
                              "rounds": Option(int, 100, minimum=1, help="pruning rounds on the exponential schedule"),
                              "precision": Option(str, "auto", choices=("auto", "float32", "float64"),
                                                  help="float32 as the reference; auto falls back to float64 on overflow")},
                     description="SynFlow: data-free iterative synaptic flow (|theta|, all-ones input, eval mode)")
