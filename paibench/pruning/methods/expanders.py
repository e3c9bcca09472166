"""Expander-graph masks: X-Net (Prabhu et al. 2018) and RReg (Stewart et al., CVPR-W 2023).

Both build a bipartite graph between the input and output channels of every prunable layer and repeat
it over the kernel (a ``Linear`` layer's mask is the graph itself), as SamsungLabs/ExpandersPruning
does. Let L be the larger side, S the smaller one (ties: the outputs are L) and d the degree:

* ``xnet``: every channel of L picks d distinct channels of S uniformly at random (exactly
  d-left-regular; S's degrees are whatever results).
* ``rreg``: every channel of L has degree exactly d and the n_L*d edges are spread evenly over S (each
  S channel gets floor or ceil of n_L*d/n_S, the ceil ones chosen at random); a uniform random simple
  bipartite graph with these degrees is drawn by the configuration model with degree-preserving swaps
  removing multi-edges (beyond half density the complement is drawn instead). The best of ``samples``
  such graphs by measured expansion (``paibench.pruning.stats.expansion``) is kept. Every channel's
  degree equals its target exactly (the reference's nx.Graph collapse of multi-edges can lose some).

Degrees, two modes:

* ``--opt degree=d`` (the RReg paper): the same d in every layer, capped at n_S. The target
  ``--compression`` is then ignored (it stays the run's label); the achieved ratio is recorded as
  ``nominal_compression`` in the mask's statistics. Not combinable with ``compression_mode=effective``.
* default (``degree=0``): per layer d_l = n_S,l / R rounded, in [1, n_S,l], then single-degree steps of
  the layers are applied greedily while they bring the total closer to the target. Tolerance: when the
  target lies between the all-degree-1 and the dense counts, |kept - target| <= max_l(k_l * n_L,l) / 2
  (k_l kernel taps), and in practice below one step of the smallest layer. A target beyond degree 1
  in every layer is an error naming the largest reachable ratio (never a silently mislabelled mask).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from paibench.errors import PaibenchError
from paibench.options import Option
from paibench.pruning.core import MethodSpec, PruneContext


def _sides(shape) -> tuple[int, int, bool]:
    """(n_L, n_S, outputs_are_larger)."""
    n_out, n_in = int(shape[0]), int(shape[1])
    return (n_out, n_in, True) if n_out >= n_in else (n_in, n_out, False)


def _taps(shape) -> int:
    return math.prod(shape[2:]) if len(shape) > 2 else 1


def layer_degrees(ctx: PruneContext) -> dict[str, int]:
    """Degree of the larger side per layer (module docstring: global or solved from the compression)."""
    shapes = {n: tuple(p.shape) for n, p in ctx.params.items()}
    fixed = int(ctx.options.get("degree", 0))
    if fixed > 0:
        return {n: min(fixed, _sides(s)[1]) for n, s in shapes.items()}
    target = ctx.target_kept
    step = {n: _taps(s) * _sides(s)[0] for n, s in shapes.items()}
    cap = {n: _sides(s)[1] for n, s in shapes.items()}
    deg = {n: min(cap[n], max(1, round(cap[n] * target / ctx.total))) for n in shapes}
    err = target - sum(deg[n] * step[n] for n in shapes)
    while True:  # greedy: the single +-1 degree change that most reduces |err|
        best, best_err = None, abs(err)
        for n in shapes:
            for delta in (1, -1):
                if 1 <= deg[n] + delta <= cap[n]:
                    e = abs(err - delta * step[n])
                    if e < best_err:
                        best, best_err = (n, delta), e
        if best is None:
            break
        n, delta = best
        deg[n] += delta
        err -= delta * step[n]
    if abs(err) > max(step.values()) / 2:  # only when degree 1 everywhere still keeps too much
        floor_kept = sum(step.values())
        raise PaibenchError(f"compression: {ctx.compression:g} is out of reach for an expander mask of this "
                            f"architecture (degree 1 in every layer keeps {floor_kept} of {ctx.total} weights); "
                            f"expected a ratio <= {ctx.total / floor_kept:.4g}, or a global --opt degree")
    return deg


def xnet_graph(n_l: int, n_s: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """(n_L, n_S) bool: each row picks d distinct columns."""
    pick = torch.rand(n_l, n_s, generator=gen).argsort(dim=1)[:, :d]
    adj = torch.zeros(n_l, n_s, dtype=torch.bool)
    adj.scatter_(1, pick, True)
    return adj


def _balanced(total: int, n: int, gen: torch.Generator) -> np.ndarray:
    degs = np.full(n, total // n, dtype=np.int64)
    degs[torch.randperm(n, generator=gen)[: total % n].numpy()] += 1
    return degs


def _simple_bipartite(left: np.ndarray, right: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """Random simple bipartite graph with exact degree sequences (configuration model + swaps).

    Stubs are paired at random; every repeated edge is then swapped with a random other edge,
    (u_i, v_i), (u_j, v_j) -> (u_i, v_j), (u_j, v_i), whenever neither new edge exists yet. Swaps keep
    all degrees, so the result has exactly the requested degrees and no multi-edge.
    """
    n_s = len(right)
    u = np.repeat(np.arange(len(left)), left)
    v = np.repeat(np.arange(n_s), right)[torch.randperm(int(right.sum()), generator=gen).numpy()]
    m = len(u)
    keys = u * n_s + v
    order = np.argsort(keys, kind="stable")
    dup = np.zeros(m, dtype=bool)
    dup[order[1:]] = keys[order[1:]] == keys[order[:-1]]
    bad = np.flatnonzero(dup).tolist()
    if not bad:
        adj = np.zeros((len(left), n_s), dtype=bool)
        adj[u, v] = True
        return adj
    present = set(keys.tolist())
    extra: dict[int, int] = {}  # key -> copies beyond the first
    for i in bad:
        extra[int(keys[i])] = extra.get(int(keys[i]), 0) + 1
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
    tries = 0

    def drop(key: int) -> None:
        if key in extra:
            extra[key] -= 1
            if not extra[key]:
                del extra[key]
        else:
            present.discard(key)

    for i in bad:
        while True:
            tries += 1
            if tries > 1000 * len(bad) + 100000:
                raise RuntimeError("rreg: could not remove multi-edges (degree sequence too dense)")
            j = int(rng.integers(m))
            a, b = int(u[i] * n_s + v[j]), int(u[j] * n_s + v[i])
            if a in present or b in present or a == b:
                continue
            drop(int(keys[i]))
            drop(int(keys[j]))
            v[i], v[j] = v[j], v[i]
            keys[i], keys[j] = a, b
            present.update((a, b))
            break
    adj = np.zeros((len(left), n_s), dtype=bool)
    adj[u, v] = True
    return adj


def rreg_graph(n_l: int, n_s: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """(n_L, n_S) bool: rows of degree d, columns of degree floor/ceil(n_L*d/n_S), simple."""
    if d >= n_s:
        return torch.ones(n_l, n_s, dtype=torch.bool)
    if 2 * d > n_s:  # draw the sparser complement: same structure, far fewer collisions
        return ~rreg_graph(n_l, n_s, n_s - d, gen)
    right = _balanced(n_l * d, n_s, gen)
    return torch.from_numpy(_simple_bipartite(np.full(n_l, d, dtype=np.int64), right, gen))


def _to_mask(adj: torch.Tensor, shape, outputs_larger: bool) -> torch.Tensor:
    chan = adj if outputs_larger else adj.t()  # (out, in)
    return chan.reshape(chan.shape + (1,) * (len(shape) - 2)).expand(shape).contiguous()


def _graph_masks(ctx: PruneContext, kind: str):
    if int(ctx.options.get("degree", 0)) > 0 and ctx.options.get("compression_mode") == "effective":
        raise PaibenchError("--opt degree: a fixed degree fixes the compression; it cannot be combined with "
                            "compression_mode=effective (use degree=0 to solve degrees from the target)")
    from paibench.pruning.stats import expansion

    degs = layer_degrees(ctx)
    masks = {}
    for name, p in ctx.params.items():
        n_l, n_s, out_larger = _sides(p.shape)
        d = degs[name]
        if kind == "xnet":
            adj = xnet_graph(n_l, n_s, d, ctx.generator)
        else:
            best, best_x = None, -1.0
            for _ in range(int(ctx.options["samples"])):
                cand = rreg_graph(n_l, n_s, d, ctx.generator)
                x = expansion(cand, ctx.generator, int(ctx.options["subsets"]))
                if x > best_x:
                    best, best_x = cand, x
            adj = best
        masks[name] = _to_mask(adj, p.shape, out_larger)
    return masks


def xnet(ctx: PruneContext):
    return _graph_masks(ctx, "xnet")


def rreg(ctx: PruneContext):
    return _graph_masks(ctx, "rreg")


_DEGREE = Option(int, 0, minimum=0, help="global degree of the larger side (0: per-layer degree from the compression)")
XNET = MethodSpec("xnet", xnet, data_free=True, options={"degree": _DEGREE},
                  description="X-Net channel graph (larger side d-regular), repeated over the kernel")
RREG = MethodSpec("rreg", rreg, data_free=True,
                  options={"degree": _DEGREE,
                           "samples": Option(int, 10, minimum=1, help="graphs drawn per layer; the best expander is kept"),
                           "subsets": Option(int, 100, minimum=1, help="random subsets per side to measure expansion")},
                  description="random regular bipartite channel graph (best of k by expansion), repeated over the kernel")
