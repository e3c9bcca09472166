"""Mask statistics: what ``paibench inspect`` prints and the ``.json`` beside every mask file records."""

from __future__ import annotations

import torch

from paibench.names import MAC_KEYS
from paibench.pruning.effective import DEFINITIONS, effective_masks


def _dead_units(m: torch.Tensor) -> tuple[int, int]:
    """(input units, output units) of a layer with no kept weight; units are dim 1 and dim 0."""
    m = m.bool()
    rows = m.flatten(1).any(dim=1) if m.dim() > 1 else m
    cols = m.transpose(0, 1).flatten(1).any(dim=1) if m.dim() > 1 else m
    return int((~cols).sum()), int((~rows).sum())


def channel_graph(m: torch.Tensor) -> torch.Tensor | None:
    """The (out, in) biadjacency of a channel-graph mask (constant over kernel positions), else None.

    A Linear mask is its own biadjacency; a conv mask qualifies when every kernel tap has the same pattern.
    """
    m = m.bool()
    if m.dim() == 2:
        return m
    if m.dim() > 2:
        first = m.flatten(2)[:, :, :1]
        if bool((m.flatten(2) == first).all()):
            return first[:, :, 0]
    return None


def random_subsets(n: int, samples: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`samples` random subsets of n units as 0/1 rows, |S| uniform in [1, max(1, floor(n/2))] and S uniform
    among the subsets of that size (as in SamsungLabs/ExpandersPruning's test_expansion); and their sizes."""
    sizes = torch.randint(1, max(1, n // 2) + 1, (samples,), generator=gen)
    ranks = torch.rand(samples, n, generator=gen).argsort(dim=1).argsort(dim=1)
    return (ranks < sizes.unsqueeze(1)).to(torch.float32), sizes.to(torch.float64)


def expansion_on(adj: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor],
                 cols: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean |N(S)|/|S| of a bipartite graph over given subsets of its rows and of its columns (both sides
    averaged). Drawing the subsets once and scoring many candidate graphs on them (common random numbers)
    compares the candidates fairly and costs one matrix product per candidate and side."""
    a = adj.bool().to(torch.float32)
    total = 0.0
    for mat, (subsets, sizes) in ((a, rows), (a.t(), cols)):
        neighbours = ((subsets @ mat) > 0).sum(dim=1).to(torch.float64)
        total += float((neighbours / sizes).mean())
    return total / 2


def expansion(adj: torch.Tensor, generator: torch.Generator | None = None, samples: int = 100) -> float:
    """Measured expansion of a bipartite graph: mean |N(S)|/|S| over random subsets S of each side.

    For each side, `samples` subsets are drawn (``random_subsets``); the result is the mean over both
    sides. Seeded through `generator` (seed 0 if None), so it is reproducible.
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    rows = random_subsets(adj.shape[0], samples, gen)
    cols = random_subsets(adj.shape[1], samples, gen)
    return expansion_on(adj, rows, cols)


def spectral_gap(adj: torch.Tensor) -> float:
    """1 - sigma_2/sigma_1 of the degree-normalised biadjacency D_out^-1/2 A D_in^-1/2.

    Isolated units are left out (their rows/columns are zero). sigma_1 = 1 for any graph with an edge; the
    gap is 1 for a complete bipartite graph, near 1 for a good expander and 0 when the graph is disconnected.
    """
    a = adj.bool().to(torch.float64)
    rows, cols = a.sum(1), a.sum(0)
    a = a[rows > 0][:, cols > 0]
    if a.numel() == 0:
        return 0.0
    b = a / rows[rows > 0].sqrt().unsqueeze(1) / cols[cols > 0].sqrt().unsqueeze(0)
    s = torch.linalg.svdvals(b)
    return float(1 - s[1] / s[0]) if len(s) > 1 else 1.0


def graph_statistics(m: torch.Tensor) -> dict:
    """Expansion and spectral gap of a channel-graph mask; None for other masks or empty graphs."""
    adj = channel_graph(m)
    if adj is None or not bool(adj.any()):
        return {"expansion": None, "spectral_gap": None}
    return {"expansion": expansion(adj), "spectral_gap": spectral_gap(adj)}


def ratio(total: int, kept: int) -> float | None:
    return total / kept if kept else None


def mask_statistics(model, masks: dict[str, torch.Tensor], info, graphs: bool = True) -> dict:
    """Statistics of a mask under both effective definitions (paibench.pruning.effective.DEFINITIONS).

    The unsuffixed keys (``effective_kept``, ``effective_compression``, ``collapsed``, per layer
    ``effective_kept``/``effective_density``/``dead_*``) are the ``paths`` definition; the ``_mica``
    suffixed keys are the MiCA reference's rule.
    """
    from paibench.models.base import example_input, weight_uses

    results = {d: effective_masks(model, masks, info, d) for d in DEFINITIONS}
    uses = weight_uses(model, example_input(info, batch=1))
    eff, collapsed = results["paths"]
    eff_mica, collapsed_mica = results["mica"]
    layers = []
    for name, m in masks.items():
        numel, kept, ekept = m.numel(), int(m.sum()), int(eff[name].sum())
        ekept_mica = int(eff_mica[name].sum())
        dead_in, dead_out = _dead_units(eff[name])
        layers.append({
            "name": name, "shape": list(m.shape), "numel": numel, "kept": kept, "effective_kept": ekept,
            "density": kept / numel, "effective_density": ekept / numel,
            "effective_kept_mica": ekept_mica, "effective_density_mica": ekept_mica / numel,
            "dead_inputs": dead_in, "dead_outputs": dead_out,
            # multiply-accumulates per example (models.base.weight_uses): dense, kept, effectively kept
            "macs": numel * uses[name], "macs_kept": kept * uses[name], "macs_effective": ekept * uses[name],
            "macs_effective_mica": ekept_mica * uses[name],
        })
        if graphs:  # channel-graph masks only (expansion, spectral_gap); None elsewhere
            layers[-1].update(graph_statistics(m))
    total = sum(layer["numel"] for layer in layers)
    kept = sum(layer["kept"] for layer in layers)
    ekept = sum(layer["effective_kept"] for layer in layers)
    ekept_mica = sum(layer["effective_kept_mica"] for layer in layers)
    macs = {key: sum(layer[key] for layer in layers) for key in MAC_KEYS}
    return {
        "total": total, "kept": kept, "nominal_compression": ratio(total, kept),
        "effective_kept": ekept, "effective_compression": ratio(total, ekept),
        "collapsed": bool(collapsed or ekept == 0),
        "effective_kept_mica": ekept_mica, "effective_compression_mica": ratio(total, ekept_mica),
        "collapsed_mica": bool(collapsed_mica or ekept_mica == 0),
        **macs,
        "layers": layers,
    }


def effective_key(definition: str, key: str = "effective_compression") -> str:
    """The statistics/metrics key of `key` under an effective definition ('paths' keys carry no suffix)."""
    if definition not in DEFINITIONS:
        raise ValueError(f"effective definition {definition!r}; expected one of {DEFINITIONS}")
    return key if definition == "paths" else f"{key}_{definition}"
