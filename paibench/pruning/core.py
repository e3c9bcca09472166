"""The pruning-method contract, exact per-layer counts, and the placement helpers every method shares."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from paibench.data.base import DatasetInfo
from paibench.lazy import nn, torch  # imported when first used (no torch to read a config)
from paibench.options import REQUIRED, Option, parse_options, recorded_options

if TYPE_CHECKING:
    import torch as _torch

Masks = dict[str, "_torch.Tensor"]  # parameter name -> bool tensor, True = kept


@dataclass
class PruneContext:
    """Everything a method may use. `model` holds the run's initial weights (seeded by the run key)."""

    model: nn.Module
    params: dict[str, nn.Parameter]  # prunable weights by parameter name, in model order
    compression: float  # nominal target: total prunable / kept
    generator: torch.Generator  # the only source of randomness a method may use
    info: DatasetInfo
    options: dict[str, Any]
    batches: Callable[[int], Iterator[tuple]] | None = None  # batches(n) -> n fresh (inputs..., targets) batches
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Every prunable weight of the model, also those the method is not asked to prune (dense_layers):
    # methods that walk the layer graph (MiCA) need the whole network; None means `params`.
    all_params: dict[str, nn.Parameter] | None = None
    payload: dict | None = None  # the prepared dataset, for methods that draw their own batches

    @property
    def network_params(self) -> dict[str, nn.Parameter]:
        return self.all_params if self.all_params is not None else self.params

    @property
    def total(self) -> int:
        return sum(p.numel() for p in self.params.values())

    @property
    def target_kept(self) -> int:
        return kept_for(self.total, self.compression)

    def with_compression(self, compression: float) -> "PruneContext":
        return replace(self, compression=compression)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable[[PruneContext], Masks]
    data_free: bool
    options: Mapping[str, Option] = field(default_factory=dict)
    description: str = ""
    # Layer-budget methods can also report per-layer kept counts (used by MiCA and rpi as budgets).
    budget: Callable[[PruneContext], dict[str, int]] | None = None
    # Methods whose need for data depends on their options (mica/rpi: on the budget method).
    needs_data: Callable[[Mapping[str, Any]], bool] | None = None
    # Checks across options (raises PaibenchError); run wherever options are parsed, so the config check
    # and `paibench mask` refuse the same things.
    validate: Callable[[Mapping[str, Any], str], None] | None = None
    # False for the method that prunes nothing (dense): one run at compression 1, no compression search.
    prunes: bool = True
    # True when the kept count is exactly round(total / compression) (nominal mode); graph methods whose
    # layers are d-regular keep a multiple of the layer size instead (close to, not at, the target).
    exact_count: bool = True

    def uses_data(self, options: Mapping[str, Any]) -> bool:
        return self.needs_data(options) if self.needs_data is not None else not self.data_free

    def parse_options(self, raw: Mapping[str, Any], field_name: str = "method") -> dict[str, Any]:
        values = parse_options(self.all_options, raw, field_name)
        if self.validate is not None:
            self.validate(values, field_name)
        return values

    @property
    def all_options(self) -> dict[str, Option]:
        return {**COMMON_OPTIONS, **self.options}

    def with_defaults(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` with every option it lacks at its declared default (the one place a default lives), so
        a method reads ``ctx.options[key]`` and never repeats a default at the use site."""
        return {**{k: o.default for k, o in self.all_options.items() if o.default is not REQUIRED}, **values}

    def recorded(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The options a mask's seed and metadata record (paibench.options.recorded_options)."""
        return recorded_options(self.all_options, values)


COMMON_OPTIONS: dict[str, Option] = {
    "compression_mode": Option(str, "nominal", choices=("nominal", "effective"),
                               help="nominal: ratio of kept weights; effective: ratio of effective weights"),
    "effective_definition": Option(str, "paths", choices=("paths", "mica"), omit_default=True,
                                   help="the effective rule compression_mode=effective meets: paths (paibench's "
                                        "input-output paths) or mica (the MiCA reference's trained-model rule)"),
    "dense_layers": Option(str, "", omit_default=True,
                           help="prunable layers left dense, comma-separated: first, last, or fnmatch patterns on "
                                "parameter names (e.g. fc.*); the compression still counts every prunable weight"),
}


def kept_for(total: int, compression: float) -> int:
    """Kept weights for a compression ratio: round(total / ratio), at least 1."""
    return max(1, min(total, int(round(total / compression))))


def allocate(numels: Mapping[str, int], weights: Mapping[str, float], target: int) -> dict[str, int]:
    """Integer counts proportional to `weights`, capped at each layer's size, summing exactly to `target`.

    Largest-remainder rounding with caps: layers that would exceed their size are set dense and the rest
    is re-spread over the others, so the total is exact whenever target <= sum(numels).
    """
    target = min(target, sum(numels.values()))
    counts = {name: 0 for name in numels}
    open_layers = {n for n in numels if weights.get(n, 0) > 0}
    remaining = target
    while open_layers:
        wsum = sum(weights[n] for n in open_layers)
        ideal = {n: remaining * weights[n] / wsum for n in open_layers}
        full = {n for n in open_layers if ideal[n] >= numels[n]}
        if not full:
            break
        for n in full:
            counts[n] = numels[n]
            remaining -= numels[n]
        open_layers -= full
    if open_layers and remaining > 0:
        ideal = {n: remaining * weights[n] / sum(weights[m] for m in open_layers) for n in open_layers}
        for n in open_layers:
            counts[n] = int(math.floor(ideal[n]))
        leftover = remaining - sum(counts[n] for n in open_layers)
        order = sorted(open_layers, key=lambda n: (-(ideal[n] - counts[n]), list(numels).index(n)))
        for n in order:
            if leftover <= 0:
                break
            if counts[n] < numels[n]:
                counts[n] += 1
                leftover -= 1
    return counts


def random_layer_mask(shape: torch.Size, kept: int, generator: torch.Generator) -> torch.Tensor:
    """Exactly `kept` ones at uniformly random positions."""
    numel = math.prod(shape)
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:kept]] = True
    return mask.view(shape)


def place_random(params: Mapping[str, nn.Parameter], counts: Mapping[str, int], generator: torch.Generator) -> Masks:
    return {name: random_layer_mask(p.shape, counts[name], generator) for name, p in params.items()}


def numels(params: Mapping[str, nn.Parameter]) -> dict[str, int]:
    return {name: p.numel() for name, p in params.items()}


def budget_method(budget_fn: Callable[[PruneContext], dict[str, int]]) -> Callable[[PruneContext], Masks]:
    """A layer-budget method: its counts, placed uniformly at random inside each layer."""

    def method(ctx: PruneContext) -> Masks:
        return place_random(ctx.params, budget_fn(ctx), ctx.generator)

    return method


def top_k_masks(scores: Mapping[str, torch.Tensor], kept: int, scope: str = "global") -> Masks:
    """Keep the `kept` highest scores globally (or the same density in every layer with scope='layer').

    Ties are broken by position (stable sort), so equal inputs give the same mask on every machine.
    """
    if scope == "layer":
        total = sum(s.numel() for s in scores.values())
        counts = allocate({n: s.numel() for n, s in scores.items()}, {n: s.numel() / total for n, s in scores.items()}, kept)
        out = {}
        for n, s in scores.items():
            flat = s.detach().flatten().double().cpu()
            m = torch.zeros_like(flat, dtype=torch.bool)
            m[torch.sort(flat, descending=True, stable=True).indices[: counts[n]]] = True
            out[n] = m.view(s.shape)
        return out
    flat = torch.cat([s.detach().flatten().double().cpu() for s in scores.values()])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.sort(flat, descending=True, stable=True).indices[:kept]] = True
    out, offset = {}, 0
    for n, s in scores.items():
        out[n] = keep[offset : offset + s.numel()].view(s.shape)
        offset += s.numel()
    return out
