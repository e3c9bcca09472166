"""The one place a mask is enforced during training (solo, packed loop and vmap runs alike) and the one
check that a mask file belongs to the model it is applied to.

A pruned weight starts at exactly zero and its gradient is zeroed before every optimizer step; with a zero
weight and a zero gradient, SGD (momentum, Nesterov, weight decay), Adam and AdamW all leave the weight,
its momentum and its moments at exactly zero, so no second pass over the weights is needed per step (a
guard re-applies the mask to the weights once per epoch).
"""

from __future__ import annotations

from pathlib import Path

from paibench.errors import PaibenchError
from paibench.lazy import torch
from paibench.pruning.maskio import check_fits, stats_path
from paibench.utils import read_json, sha256_file


def mask_gradients(grads: list, masks: list) -> None:
    """Zero the pruned entries of every gradient: one fused multi-tensor multiply (one kernel per list)."""
    if grads:
        torch._foreach_mul_(grads, masks)


class MaskEnforcer:
    """Keeps pruned weights of one model at exactly zero."""

    def __init__(self, model, masks: dict):
        from paibench.models import prunable_parameters

        params = prunable_parameters(model)
        self.weights = [params[n] for n in masks]
        self.masks = [masks[n].to(device=params[n].device, dtype=params[n].dtype) for n in masks]

    def apply_to_weights(self) -> None:
        # masked_fill, not multiply: a diverged run's NaN * 0 would stay NaN.
        with torch.no_grad():
            for w, m in zip(self.weights, self.masks):
                w.masked_fill_(m == 0, 0.0)

    def apply_to_grads(self) -> None:
        pairs = [(w.grad, m) for w, m in zip(self.weights, self.masks) if w.grad is not None]
        with torch.no_grad():
            mask_gradients([g for g, _ in pairs], [m for _, m in pairs])


def _has_content_hash(mask_file) -> bool:
    from safetensors import safe_open

    with safe_open(str(mask_file), framework="pt") as f:
        return bool((f.metadata() or {}).get("content_sha256"))


def check_mask(masks: dict, model, mask_file: str | Path) -> None:
    """Refuse a mask whose parameter names or shapes do not match the architecture, or whose hash is off."""
    from paibench.models import prunable_parameters

    check_fits(masks, prunable_parameters(model), f"mask {mask_file}")
    stats_file = stats_path(mask_file)
    if stats_file.exists():
        # The .json's sha256 catches a mask replaced under the same name; a mask with its own content hash
        # (checked when it was loaded) stays usable when its .json was emptied or damaged.
        try:
            recorded = read_json(stats_file).get("sha256")
        except (ValueError, AttributeError):
            if _has_content_hash(mask_file):
                return
            raise PaibenchError(f"mask {mask_file}: its statistics file {stats_file} is unreadable and the mask has no "
                                f"content hash of its own; recompute it (paibench mask) or restore the .json") from None
        actual = sha256_file(mask_file)
        if recorded and recorded != actual:
            raise PaibenchError(f"mask {mask_file}: sha256 {actual[:12]}... differs from the {recorded[:12]}... "
                                f"recorded in {stats_file}; the file is corrupt or was replaced")
