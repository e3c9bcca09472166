"""Make a mask for one (dataset, arch, method, compression, seed) and write it with its statistics."""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import replace
from typing import Any

import torch

from paibench.data import DATASETS, info_from_payload
from paibench.data.base import DatasetInfo
from paibench.errors import PaibenchError
from paibench.models import ARCHS, build_model, prunable_parameters
from paibench.pruning.core import Masks, PruneContext, kept_for
from paibench.pruning.maskio import check_fits, save_mask, stats_path
from paibench.pruning.methods import METHODS
from paibench.pruning.effective import effective_masks
from paibench.pruning.stats import mask_statistics
from paibench.utils import derive_seed, format_compression, sha256_file, write_json


def arch_key(arch: str, width: float, arch_options: dict) -> str:
    extra = "".join(f"+{k}={v}" for k, v in sorted(arch_options.items()))
    return f"{arch}+w={width:g}{extra}"


def init_seed(dataset: str, arch: str, width: float, arch_options: dict, seed: int) -> int:
    """Initial weights depend on (dataset, arch, seed) only, so every method prunes the same network."""
    return derive_seed("init", dataset, arch_key(arch, width, arch_options), seed)


def pruning_batches(payload: dict, info: DatasetInfo, opts: dict, generator, device):
    """The batch source a data-dependent method's options ask for (its task's: class-balanced images by
    default, uniform batches with ``batching: random``, the full graph for node classification)."""
    from paibench.tasks import task_for

    return task_for(info.kind).pruning_batches(payload, info, opts, generator, device)


def resolve_info(dataset: str, payload: dict | None, dataset_options: dict | None = None) -> DatasetInfo:
    spec = DATASETS.get(dataset)
    if payload is not None:
        info = info_from_payload(payload)
        return DatasetInfo(dataset, info.kind, info.num_classes, info.channels, info.size, info.num_features)
    if spec.info is None:
        raise PaibenchError(f"--data: dataset {dataset!r} has no fixed shape; pass its prepared file with --data")
    return spec.info(spec.parse_options(dataset_options or {}))


def compute_masks(ctx: PruneContext, method: str) -> Masks:
    spec = METHODS.get(method)
    ctx = replace(ctx, options=spec.with_defaults(ctx.options))
    if not spec.prunes:
        return spec.fn(ctx)
    if ctx.options["compression_mode"] == "nominal":
        return with_dense_layers(ctx, spec.fn)
    return _search_effective(ctx, lambda c: with_dense_layers(c, spec.fn))


def dense_layer_names(selectors: str, names: list[str]) -> list[str]:
    """Parameter names picked by ``dense_layers`` (first, last, fnmatch patterns), in model order."""
    picked: set[str] = set()
    for sel in (t.strip() for t in selectors.split(",")):
        if not sel:
            continue
        matched = names[:1] if sel == "first" else names[-1:] if sel == "last" else fnmatch.filter(names, sel)
        if not matched:
            raise PaibenchError(f"--opt dense_layers: {sel!r} matches no prunable layer; expected first, last or a "
                                f"pattern matching one of {', '.join(names[:6])}{', ...' if len(names) > 6 else ''}")
        picked.update(matched)
    return [n for n in names if n in picked]


def with_dense_layers(ctx: PruneContext, fn) -> Masks:
    """Run a method on the layers not listed in ``dense_layers``; the listed ones are kept whole.

    The compression keeps counting every prunable weight: the method keeps target_kept minus the dense
    layers' weights among the other layers (an error when the dense layers alone exceed the target).
    """
    dense = dense_layer_names(ctx.options["dense_layers"], list(ctx.params))
    if not dense:
        return fn(ctx)
    dense_total = sum(ctx.params[n].numel() for n in dense)
    sub = {n: p for n, p in ctx.params.items() if n not in dense}
    keep = ctx.target_kept - dense_total
    if not sub or keep < 1:
        raise PaibenchError(f"compression: {ctx.compression:g} is out of reach with dense_layers="
                            f"{ctx.options['dense_layers']!r}: those layers alone keep {dense_total} of {ctx.total} "
                            f"weights; expected a ratio < {ctx.total / dense_total:.4g}")
    sub_total = sum(p.numel() for p in sub.values())
    masks = fn(replace(ctx, params=sub, compression=sub_total / keep, all_params=ctx.params))
    masks.update({n: torch.ones(ctx.params[n].shape, dtype=torch.bool) for n in dense})
    return {n: masks[n] for n in ctx.params}


def _search_effective(ctx: PruneContext, fn) -> Masks:
    """Bisect the nominal ratio (on a log scale) until the effective ratio meets the target.

    Effective kept <= nominal kept, so the nominal ratio searched lies in [1, target]. The result is the
    least-compressed nominal ratio whose effective ratio (under ``effective_definition``) is still >= the
    target (within 0.5 %).
    """
    target = ctx.compression
    total = ctx.total
    definition = ctx.options["effective_definition"]

    def attempt(nominal: float):
        gen_state = ctx.generator.get_state()
        masks = fn(ctx.with_compression(nominal))
        ctx.generator.set_state(gen_state)  # every attempt sees the same random stream
        eff_masks, collapsed = effective_masks(ctx.model, masks, ctx.info, definition)
        eff = 0 if collapsed else sum(int(m.sum()) for m in eff_masks.values())
        return masks, (total / eff if eff else float("inf"))

    # A collapsed mask (no input-output path) never meets a target: it is too compressed, not "infinitely
    # effective", so the search moves towards less compression and keeps the best connected candidate.
    best, best_eff = attempt(target)
    if best_eff <= target * 1.005:
        return best
    best_ok = best_eff != float("inf")
    lo, hi = 1.0, target  # effective(lo) may be < target; effective(hi) > target
    for _ in range(20):
        mid = (lo * hi) ** 0.5
        masks, eff = attempt(mid)
        if eff >= target:
            hi = mid
            if eff != float("inf") or not best_ok:
                best, best_eff, best_ok = masks, eff, eff != float("inf")
        else:
            lo = mid
        if kept_for(total, lo) - kept_for(total, hi) <= 1 or best_eff <= target * 1.005:
            break
    return best


def make_mask(
    dataset: str,
    arch: str,
    method: str,
    compression: float,
    seed: int,
    out: str,
    options: dict[str, Any] | None = None,
    width: float = 1.0,
    arch_options: dict | None = None,
    payload: dict | None = None,
    dataset_options: dict | None = None,
    device: str = "cpu",
    recorded_spec: dict | None = None,
) -> dict:
    """Compute, verify and save a mask; returns its statistics (also written to ``<out>.json``).

    `recorded_spec`: what the workflow made it from (paibench.config.Grid.mask_spec), recorded in the statistics so a
    later config that differs is detected (never part of the mask file or its seed)."""
    started = time.perf_counter()
    spec = METHODS.get(method)
    opts = spec.parse_options(options or {}, "--opt")
    if not spec.prunes:
        compression = 1.0
    elif not compression > 1:
        raise PaibenchError(f"--compression: {compression!r} is not allowed for method {method!r}; expected a ratio > 1 (e.g. 10 or 1e3)")
    arch_opts = ARCHS.get(arch).parse_options(arch_options or {}, "arch option")
    info = resolve_info(dataset, payload, dataset_options)
    if spec.uses_data(opts) and payload is None:
        raise PaibenchError(f"--data: method {method!r} needs data; pass the prepared dataset file with --data")
    model = build_model(arch, info, width, arch_opts, seed=init_seed(dataset, arch, width, arch_opts, seed))
    dev = torch.device(device)
    model.to(dev)
    params = prunable_parameters(model)
    recorded = spec.recorded(opts)
    seed_opts = dict(recorded)
    if recorded.get("budget_mask"):  # the budget mask's content, not where it lies, decides the mask
        from paibench.inputs import input_file

        input_file("--opt budget_mask", recorded["budget_mask"], "mask")
        seed_opts["budget_mask"] = sha256_file(recorded["budget_mask"])
    mask_seed = derive_seed("mask", dataset, arch_key(arch, width, arch_opts), method,
                            json.dumps(seed_opts, sort_keys=True), format_compression(compression), seed)
    generator = torch.Generator().manual_seed(mask_seed)
    batches = None
    if payload is not None and spec.uses_data(opts):
        batches = pruning_batches(payload, info, opts, generator, dev)
    ctx = PruneContext(model, params, compression, generator, info, opts, batches, dev, payload=payload)
    masks = {name: m.to("cpu", torch.bool) for name, m in compute_masks(ctx, method).items()}
    check_fits(masks, params, f"method {method!r}")  # a method (or plug-in) returned masks of other shapes
    model.cpu()
    stats = mask_statistics(model, masks, info)
    metadata = {
        "dataset": dataset, "arch": arch, "arch_options": arch_opts, "width": f"{width:g}", "method": method,
        "options": recorded, "compression": format_compression(compression), "seed": str(seed),
    }
    save_mask(masks, out, metadata)
    stats.update({
        "target_compression": compression, "dataset": dataset, "arch": arch, "arch_options": arch_opts,
        "width": width, "method": method, "options": recorded, "seed": seed, "init_seed": init_seed(dataset, arch, width, arch_opts, seed),
        "mask_seed": mask_seed, "sha256": sha256_file(out), "seconds": round(time.perf_counter() - started, 3),
        "mask_file": str(out),
    })
    if recorded_spec is not None:
        stats["spec"] = recorded_spec
    dense = dense_layer_names(opts["dense_layers"], list(params)) if spec.prunes else []
    if dense:
        stats["dense_layers"] = dense
    write_json(stats_path(out), stats)
    return stats
