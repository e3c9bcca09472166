"""Mask statistics: what ``paibench inspect`` prints and the ``.json`` beside every mask file records."""

from __future__ import annotations

import torch

from paibench.pruning.effective import effective_masks


def _dead_units(m: torch.Tensor) -> tuple[int, int]:
    """(input units, output units) of a layer with no kept weight; units are dim 1 and dim 0."""
    m = m.bool()
    rows = m.flatten(1).any(dim=1) if m.dim() > 1 else m
    cols = m.transpose(0, 1).flatten(1).any(dim=1) if m.dim() > 1 else m
    return int((~cols).sum()), int((~rows).sum())


def ratio(total: int, kept: int) -> float | None:
    return total / kept if kept else None


def mask_statistics(model, masks: dict[str, torch.Tensor], info) -> dict:
    eff, collapsed = effective_masks(model, masks, info)
    layers = []
    for name, m in masks.items():
        numel, kept, ekept = m.numel(), int(m.sum()), int(eff[name].sum())
        dead_in, dead_out = _dead_units(eff[name])
        layers.append({
            "name": name, "shape": list(m.shape), "numel": numel, "kept": kept, "effective_kept": ekept,
            "density": kept / numel, "effective_density": ekept / numel,
            "dead_inputs": dead_in, "dead_outputs": dead_out,
        })
    total = sum(layer["numel"] for layer in layers)
    kept = sum(layer["kept"] for layer in layers)
    ekept = sum(layer["effective_kept"] for layer in layers)
    return {
        "total": total, "kept": kept, "nominal_compression": ratio(total, kept),
        "effective_kept": ekept, "effective_compression": ratio(total, ekept),
        "collapsed": bool(collapsed or ekept == 0), "layers": layers,
    }
