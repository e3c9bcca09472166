"""Expander-graph masks: X-Net (Prabhu et al. 2018), RReg (Stewart et al., CVPR-W 2023) and the
equal-degree random channel graph the RReg paper compares them with.

All build a bipartite graph between the input and output channels of every prunable layer and repeat
it over the kernel (a ``Linear`` layer's mask is the graph itself), as SamsungLabs/ExpandersPruning
does. Let L be the larger side, S the smaller one (ties: the outputs are L) and d the degree.

Orientation (``xnet`` and ``random_graph``, option ``orientation``): ``larger`` (paibench's default) lets
the channels of L pick, so no unit of the larger side is left without an edge; ``input`` is the
reference's (``graph_utils.xnet_graph`` / ``random_graph``: every *input* channel picks d outputs, or
joins each output with probability d/n_out). At d=3 on VGG-16 the reference's first conv (3 -> 64) has 9
channel edges (9 of 64 outputs live); ``larger`` makes it dense. ``rreg`` is the same in both: its larger
side is d-regular (the reference's ``rreg_graph``).

* ``random_graph``: every (picking, picked) channel pair is an edge with probability d / n_picked (the
  reference's ``random`` model); kept counts are binomial around the target, not exact.

* ``xnet``: every channel of L picks d distinct channels of S uniformly at random (exactly
  d-left-regular; S's degrees are whatever results).
* ``rreg``: every channel of L has degree exactly d and the n_L*d edges are spread evenly over S (each
  S channel gets floor or ceil of n_L*d/n_S, the ceil ones chosen at random); a uniform random simple
  bipartite graph with these degrees is drawn by the configuration model with degree-preserving swaps
  removing multi-edges (beyond half density the complement is drawn instead). The best of ``samples``
  such graphs by measured expansion (``paibench.pruning.stats.expansion_on``, every candidate on the same
  random subsets) is kept. Every channel's
  degree equals its target exactly. ``multi_edges=collapse`` is the reference's instead: the
  configuration model's pairs go into an nx.Graph, so repeated pairs merge and some degrees fall below d.
  The reference keeps the best of 100 graphs by 1,000 subset samples (``samples=100 subsets=1000``).

``graph_reuse=true`` (the reference's on-disk graph cache): one graph per (generator, n_in, n_out, d,
options), drawn from a seed of those values only, so every layer of that size in every run and seed gets
the same graph, as the reference reuses a cached graph file. Default: a fresh graph per layer and seed.

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

import json
import math

import numpy as np

from paibench.lazy import torch  # imported when first used (no torch to read a config)
from paibench.errors import PaibenchError
from paibench.options import Option
from paibench.pruning.core import MethodSpec, PruneContext
from paibench.utils import derive_seed


def _sides(shape, orientation: str = "larger") -> tuple[int, int, bool]:
    """(n_picking, n_picked, picking_side_is_output): the side whose channels have degree d comes first."""
    n_out, n_in = int(shape[0]), int(shape[1])
    if orientation == "input":
        return n_in, n_out, False
    return (n_out, n_in, True) if n_out >= n_in else (n_in, n_out, False)


def _taps(shape) -> int:
    return math.prod(shape[2:]) if len(shape) > 2 else 1


def layer_degrees(ctx: PruneContext) -> dict[str, int]:
    """Degree of the larger side per layer (module docstring: global or solved from the compression)."""
    shapes = {n: tuple(p.shape) for n, p in ctx.params.items()}
    orientation = ctx.options.get("orientation", _ORIENTATION.default)  # rreg has no such option: always larger
    fixed = int(ctx.options["degree"])
    if fixed > 0:
        widest = max(_sides(s, orientation)[1] for s in shapes.values())
        if fixed >= widest:  # every layer would be dense: a mislabelled dense run
            raise PaibenchError(f"--opt degree: {fixed} is not allowed for this architecture: it makes every layer "
                                f"dense; expected a degree below {widest} (the widest layer's picked side)")
        return {n: min(fixed, _sides(s, orientation)[1]) for n, s in shapes.items()}
    target = ctx.target_kept
    step = {n: _taps(s) * _sides(s, orientation)[0] for n, s in shapes.items()}
    cap = {n: _sides(s, orientation)[1] for n, s in shapes.items()}
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


def random_channel_graph(n_l: int, n_s: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """(n_L, n_S) bool: each pair an edge with probability d / n_S (reference ``random_graph``)."""
    return torch.rand(n_l, n_s, generator=gen) < d / n_s


def collapsed_configuration_graph(n_l: int, n_s: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """The reference's rreg draw: configuration-model pairs merged into a simple graph (degrees <= target)."""
    right = _balanced(n_l * d, n_s, gen)
    u = np.repeat(np.arange(n_l), d)
    v = np.repeat(np.arange(n_s), right)[torch.randperm(int(right.sum()), generator=gen).numpy()]
    adj = torch.zeros(n_l, n_s, dtype=torch.bool)
    adj[torch.from_numpy(u), torch.from_numpy(v)] = True
    return adj


def rreg_graph(n_l: int, n_s: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """(n_L, n_S) bool: rows of degree d, columns of degree floor/ceil(n_L*d/n_S), simple."""
    if d >= n_s:
        return torch.ones(n_l, n_s, dtype=torch.bool)
    if 2 * d > n_s:  # draw the sparser complement: same structure, far fewer collisions
        return ~rreg_graph(n_l, n_s, n_s - d, gen)
    right = _balanced(n_l * d, n_s, gen)
    return torch.from_numpy(_simple_bipartite(np.full(n_l, d, dtype=np.int64), right, gen))


def _to_mask(adj: torch.Tensor, shape, picking_is_output: bool) -> torch.Tensor:
    chan = adj if picking_is_output else adj.t()  # (out, in)
    return chan.reshape(chan.shape + (1,) * (len(shape) - 2)).expand(shape).contiguous()


def _draw(kind: str, n_l: int, n_s: int, d: int, options, gen: torch.Generator) -> torch.Tensor:
    """One layer's (picking, picked) channel graph."""
    if kind == "xnet":
        return xnet_graph(n_l, n_s, d, gen)
    if kind == "random_graph":
        return random_channel_graph(n_l, n_s, d, gen)
    from paibench.pruning.stats import expansion_on, random_subsets

    draw = collapsed_configuration_graph if options["multi_edges"] == "collapse" else rreg_graph
    # Every candidate is scored on the same random subsets: a fair comparison, and the subsets (the costly
    # part at 1,000 per side) are drawn once per layer instead of once per candidate.
    rows = random_subsets(n_l, int(options["subsets"]), gen)
    cols = random_subsets(n_s, int(options["subsets"]), gen)
    best, best_x = None, -1.0
    for _ in range(int(options["samples"])):
        cand = draw(n_l, n_s, d, gen)
        x = expansion_on(cand, rows, cols)
        if x > best_x:
            best, best_x = cand, x
    return best


def validate(options, field: str) -> None:
    if int(options["degree"]) > 0 and options["compression_mode"] == "effective":
        raise PaibenchError(f"{field}.degree: {options['degree']!r} is not allowed with compression_mode=effective "
                            f"(a fixed degree fixes the compression); expected degree 0, which solves degrees "
                            f"from the target")


def _graph_masks(ctx: PruneContext, kind: str):
    orientation = ctx.options.get("orientation", _ORIENTATION.default)  # rreg has no such option: always larger
    reuse = bool(ctx.options["graph_reuse"])
    shown = json.dumps({k: v for k, v in sorted(ctx.options.items())
                        if k in ("orientation", "samples", "subsets", "multi_edges")})
    degs = layer_degrees(ctx)
    cache: dict[tuple, torch.Tensor] = {}
    masks = {}
    for name, p in ctx.params.items():
        n_l, n_s, picking_is_output = _sides(p.shape, orientation)
        d = degs[name]
        if reuse:  # one graph per size, from a seed of the size alone: the reference's graph file cache
            key = (kind, int(p.shape[1]), int(p.shape[0]), d, shown)
            if key not in cache:
                gen = torch.Generator().manual_seed(derive_seed("graph", *key))
                cache[key] = _draw(kind, n_l, n_s, d, ctx.options, gen)
            adj = cache[key]
        else:
            adj = _draw(kind, n_l, n_s, d, ctx.options, ctx.generator)
        masks[name] = _to_mask(adj, p.shape, picking_is_output)
    return masks


def xnet(ctx: PruneContext):
    return _graph_masks(ctx, "xnet")


def rreg(ctx: PruneContext):
    return _graph_masks(ctx, "rreg")


def random_graph(ctx: PruneContext):
    return _graph_masks(ctx, "random_graph")


_DEGREE = Option(int, 0, minimum=0, help="global degree of the picking side (0: per-layer degree from the compression)")
_ORIENTATION = Option(str, "larger", choices=("larger", "input"), omit_default=True,
                      help="which channels pick d neighbours: larger side (paibench) or every input (the reference)")
_REUSE = Option(bool, False, omit_default=True,
                help="one graph per (n_in, n_out, d) for every layer, run and seed (the reference's graph cache)")
XNET = MethodSpec("xnet", xnet, data_free=True, validate=validate, exact_count=False,
                  options={"degree": _DEGREE, "orientation": _ORIENTATION, "graph_reuse": _REUSE},
                  description="X-Net channel graph (picking side d-regular), repeated over the kernel")
RANDOM_GRAPH = MethodSpec("random_graph", random_graph, data_free=True, validate=validate, exact_count=False,
                          options={"degree": _DEGREE, "orientation": _ORIENTATION, "graph_reuse": _REUSE},
                          description="random channel graph, each pair an edge with probability d/n (the RReg "
                                      "paper's equal-degree random baseline), repeated over the kernel")
RREG = MethodSpec("rreg", rreg, data_free=True, validate=validate, exact_count=False,
                  options={"degree": _DEGREE,
                           "samples": Option(int, 10, minimum=1, help="graphs drawn per layer; the best expander is kept"),
                           "subsets": Option(int, 100, minimum=1, help="random subsets per side to measure expansion"),
                           "multi_edges": Option(str, "swap", choices=("swap", "collapse"), omit_default=True,
                                                 help="swap: exact degrees by degree-preserving swaps; collapse: repeated "
                                                      "pairs merge, as the reference's nx.Graph does"),
                           "graph_reuse": _REUSE},
                  description="random regular bipartite channel graph (best of k by expansion), repeated over the kernel")
