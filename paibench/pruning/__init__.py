"""Make a mask for one (dataset, arch, method, compression, seed) and write it with its statistics."""

from __future__ import annotations

import json
import time
from typing import Any

import torch

from paibench.data import DATASETS, info_from_payload
from paibench.data.base import DatasetInfo
from paibench.errors import PaibenchError
from paibench.models import ARCHS, build_model, prunable_parameters
from paibench.pruning.core import Masks, PruneContext, kept_for
from paibench.pruning.maskio import save_mask, stats_path
from paibench.pruning.methods import METHODS
from paibench.pruning.stats import mask_statistics
from paibench.utils import derive_seed, format_compression, sha256_file, write_json


def arch_key(arch: str, width: float, arch_options: dict) -> str:
    extra = "".join(f"+{k}={v}" for k, v in sorted(arch_options.items()))
    return f"{arch}+w={width:g}{extra}"


def init_seed(dataset: str, arch: str, width: float, arch_options: dict, seed: int) -> int:
    """Initial weights depend on (dataset, arch, seed) only, so every method prunes the same network."""
    return derive_seed("init", dataset, arch_key(arch, width, arch_options), seed)


def image_batches(payload: dict, per_class: int, generator: torch.Generator, device):
    """Class-balanced batches (`per_class` images of every class), fresh draws each call, normalised."""
    x, y = payload["x_train"], payload["y_train"]
    mean = payload["mean"].view(1, -1, 1, 1)
    std = payload["std"].view(1, -1, 1, 1)
    by_class = [torch.nonzero(y == c).flatten() for c in range(int(payload["num_classes"]))]

    def batches(n: int):
        for _ in range(n):
            idx = torch.cat([c[torch.randint(len(c), (min(per_class, len(c)),), generator=generator)] for c in by_class if len(c)])
            xb = ((x[idx].float() / 255.0) - mean) / std
            yield (xb.to(device),), y[idx].to(device)

    return batches


def graph_batches(payload: dict, device):
    """The full graph; targets outside the training nodes are -100 (ignored by cross-entropy)."""
    from paibench.models.gnn import normalized_adjacency

    x = payload["x"].to(device)
    adj = normalized_adjacency(payload["edge_index"].to(device), x.shape[0])
    y = torch.where(payload["train_mask"], payload["y"], torch.full_like(payload["y"], -100)).to(device)

    def batches(n: int):
        for _ in range(n):
            yield (x, adj), y

    return batches


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
    if method == "dense":
        return spec.fn(ctx)
    if ctx.options.get("compression_mode", "nominal") == "nominal":
        return spec.fn(ctx)
    return _search_effective(ctx, spec)


def _search_effective(ctx: PruneContext, spec) -> Masks:
    """Bisect the nominal ratio (on a log scale) until the effective ratio meets the target.

    Effective kept <= nominal kept, so the nominal ratio searched lies in [1, target]. The result is the
    least-compressed nominal ratio whose effective ratio is still >= the target (within 0.5 %).
    """
    target = ctx.compression
    total = ctx.total

    def attempt(nominal: float):
        gen_state = ctx.generator.get_state()
        masks = spec.fn(ctx.with_compression(nominal))
        ctx.generator.set_state(gen_state)  # every attempt sees the same random stream
        stats = mask_statistics(ctx.model, masks, ctx.info, graphs=False)
        eff = stats["effective_kept"]
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
) -> dict:
    """Compute, verify and save a mask; returns its statistics (also written to ``<out>.json``)."""
    started = time.perf_counter()
    spec = METHODS.get(method)
    opts = spec.parse_options(options or {}, "--opt")
    if method == "dense":
        compression = 1.0
    elif not compression > 1:
        raise PaibenchError(f"compression: {compression!r} is not allowed; expected a ratio > 1 (e.g. 10 or 1e3)")
    arch_opts = ARCHS.get(arch).parse_options(arch_options or {}, "arch option")
    info = resolve_info(dataset, payload, dataset_options)
    if spec.uses_data(opts) and payload is None:
        raise PaibenchError(f"--data: method {method!r} needs data; pass the prepared dataset file with --data")
    model = build_model(arch, info, width, arch_opts, seed=init_seed(dataset, arch, width, arch_opts, seed))
    dev = torch.device(device)
    model.to(dev)
    params = prunable_parameters(model)
    mask_seed = derive_seed("mask", dataset, arch_key(arch, width, arch_opts), method,
                            json.dumps(opts, sort_keys=True), format_compression(compression), seed)
    generator = torch.Generator().manual_seed(mask_seed)
    batches = None
    if payload is not None and spec.uses_data(opts):
        per_class = int(opts.get("samples_per_class", 10))
        batches = (image_batches(payload, per_class, generator, dev) if info.kind == "image"
                   else graph_batches(payload, dev))
    ctx = PruneContext(model, params, compression, generator, info, opts, batches, dev)
    masks = {name: m.to("cpu", torch.bool) for name, m in compute_masks(ctx, method).items()}
    _verify(masks, params)
    model.cpu()
    stats = mask_statistics(model, masks, info)
    metadata = {
        "dataset": dataset, "arch": arch, "arch_options": arch_opts, "width": f"{width:g}", "method": method,
        "options": opts, "compression": format_compression(compression), "seed": str(seed),
    }
    save_mask(masks, out, metadata)
    stats.update({
        "target_compression": compression, "dataset": dataset, "arch": arch, "arch_options": arch_opts,
        "width": width, "method": method, "options": opts, "seed": seed, "init_seed": init_seed(dataset, arch, width, arch_opts, seed),
        "mask_seed": mask_seed, "sha256": sha256_file(out), "seconds": round(time.perf_counter() - started, 3),
        "mask_file": str(out),
    })
    write_json(stats_path(out), stats)
    return stats


def _verify(masks: Masks, params) -> None:
    if set(masks) != set(params):
        raise RuntimeError(f"method returned masks for {sorted(set(masks) ^ set(params))[:3]}... not matching the prunable set")
    for name, p in params.items():
        if masks[name].shape != p.shape:
            raise RuntimeError(f"mask {name} has shape {tuple(masks[name].shape)}, weight has {tuple(p.shape)}")
