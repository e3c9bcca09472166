"""The public Python API: build a network, make or load a mask, and apply it to any training loop.

    import paibench
    model = paibench.build_model("vgg16", "cifar10", seed=0)
    masks = paibench.make_mask("cifar10", "vgg16", "erk", compression=100, seed=0)
    paibench.apply_mask(model, masks)  # torch.nn.utils.prune: pruned weights stay zero under any optimizer

The network `build_model` returns for (dataset, arch, width, options, seed) holds exactly the initial
weights that `make_mask` prunes for the same values.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn


def build_model(arch: str, dataset: str = "cifar10", width: float = 1.0, seed: int | None = 0,
                arch_options: Mapping[str, Any] | None = None, payload: dict | None = None) -> nn.Module:
    """A registered architecture for a dataset's shape; `seed` gives the run's initial weights (None: torch's
    own initialisation). Datasets whose shape is known only from their files need `payload`."""
    from paibench.models import ARCHS
    from paibench.models import build_model as _build
    from paibench.pruning import init_seed, resolve_info

    options = ARCHS.get(arch).parse_options(dict(arch_options or {}), "arch_options")
    info = resolve_info(dataset, payload)
    return _build(arch, info, width, options,
                  seed=None if seed is None else init_seed(dataset, arch, width, options, seed))


def make_mask(dataset: str, arch: str, method: str, compression: float, seed: int = 0, *,
              options: Mapping[str, Any] | None = None, width: float = 1.0,
              arch_options: Mapping[str, Any] | None = None, payload: dict | None = None,
              out: str | Path | None = None, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The mask (parameter name -> bool tensor, True = kept) of `method` at `compression`; also written to
    `out` (.safetensors, statistics beside it) when given. Data-dependent methods need the prepared `payload`."""
    from paibench.pruning import make_mask as _make

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(out) if out is not None else Path(tmp) / "mask.safetensors"
        _make(dataset, arch, method, compression, seed, str(path), options=dict(options or {}), width=width,
              arch_options=dict(arch_options or {}), payload=payload, device=device)
        return load_mask(path)


def load_mask(path: str | Path) -> dict[str, torch.Tensor]:
    """A mask file's tensors (checked against the content hash in its header)."""
    from paibench.inputs import input_file
    from paibench.pruning.maskio import load_mask as _load

    input_file("path", path, "mask")
    return _load(path)[0]


def apply_mask(model: nn.Module, masks: Mapping[str, torch.Tensor] | str | Path) -> nn.Module:
    """Register each layer's mask with ``torch.nn.utils.prune.custom_from_mask``: the weight becomes
    ``weight_orig * weight_mask``, so the mask travels with the module (state_dict, copies, any optimizer).
    `masks` is a mask dict or a mask file; its names and shapes must match the model's prunable weights."""
    from torch.nn.utils import prune

    from paibench.models import prunable_parameters
    from paibench.pruning.maskio import check_fits

    if not isinstance(masks, Mapping):
        masks = load_mask(masks)
    params = prunable_parameters(model)
    check_fits(masks, params, "masks")
    for name, mask in masks.items():
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        prune.custom_from_mask(module, attr, mask.to(device=params[name].device, dtype=torch.bool))
    return model
