"""How big a grid is before it runs: jobs, training work and rough mask and GPU hours (``check-config``).

The hours are order-of-magnitude estimates from the recipe and the networks' multiply-accumulates (MACs),
at the sustained rates below; they exist to catch a grid that is far larger than intended before
Snakemake spends minutes planning it.
"""

from __future__ import annotations

from paibench.data import DATASETS

GPU_FLOPS = 50e12  # sustained training FLOP/s assumed for one modern GPU (bf16 CNN training)
CPU_FLOPS = 5e10  # sustained FLOP/s of one mask job on a few CPU cores
MASK_OVERHEAD_S = 2.0  # process start, model build and statistics of one mask job
WARN_RUNS = 10_000
WARN_GPU_HOURS = 1_000.0


def forward_macs(arch: str, info, width: float, options: dict) -> int:
    """Multiply-accumulates of one forward pass of one example (conv and linear layers), on the meta device."""
    import torch

    from paibench.models import build_model
    from paibench.models.base import example_input, prunable_parameters, weight_uses

    with torch.device("meta"):
        model = build_model(arch, info, width, options)
    try:
        with torch.device("meta"):
            uses = weight_uses(model, tuple(t.to("meta") for t in example_input(info, batch=1)))
    except Exception:  # an architecture that cannot run on the meta device: no estimate
        return 0
    params = prunable_parameters(model)
    return int(sum(params[n].numel() * u for n, u in uses.items()))


def _mask_flops(method: str, options: dict, macs: int) -> float:
    """Rough FLOPs of computing one mask (forward + backward = 3 forward passes of 2 FLOPs per MAC): the
    scoring passes its options ask for (rounds, T, num_batches of images); 0 for data-free budget methods."""
    from paibench.pruning.methods import METHODS

    options = METHODS.get(method).with_defaults(options)
    step = 6.0 * macs
    passes = options.get("rounds") or options.get("T", 1)  # synflow's rounds; the iterative methods' T
    if "samples_per_class" not in options:  # no data batches: data-free (synflow scores one all-ones input)
        return passes * step if "rounds" in options else 0.0
    images = options["samples_per_class"] * 10 if options["batching"] == "per_class" else options["batch_size"]
    batches = max(1, int(options["num_batches"]))  # -1 (one pass) counted as 1: its size is the data's
    return passes * batches * images * step * (3 if method == "grasp" else 1)


def grid_size(grid, compute: bool = False) -> dict:
    """Counts of a validated Grid; with `compute`, rough training and mask costs too (builds each
    architecture on the meta device for its multiply-accumulates: this part imports torch)."""
    macs_cache: dict[tuple, int] = {}
    info_cache: dict[str, object] = {}

    def info_of(label):
        if label not in info_cache:
            entry = grid.datasets[label]
            spec = DATASETS.get(entry.type)
            info_cache[label] = spec.info(entry.options) if spec.info else None
        return info_cache[label]

    def macs_of(dataset, arch):
        key = (dataset, arch)
        if key not in macs_cache:
            info = info_of(dataset)
            a = grid.archs[arch]
            macs_cache[key] = forward_macs(a.name, info, a.width, a.options) if info and info.kind == "image" else 0
        return macs_cache[key]

    masks = {(r.dataset, r.arch, r.method, r.compression, r.seed) for r in grid.runs}
    train_jobs = len(grid.packs(lambda run: False)) + sum(1 for r in grid.runs if grid.pack.get(r.experiment, 1) <= 1)
    size = {
        "runs": len(grid.runs), "experiments": len(grid.config["experiments"]), "masks": len(masks),
        "jobs": len(grid.datasets) + len(masks) + train_jobs + len(grid.runs) + 3 + len(grid.config["experiments"]),
        "train_jobs": train_jobs,
    }
    if not compute:
        return size
    gpu_flops, examples_epochs, unknown = 0.0, 0, set()
    for r in grid.runs:
        spec = DATASETS.get(grid.datasets[r.dataset].type)
        n_train = spec.train_examples(grid.datasets[r.dataset].options) if spec.train_examples else None
        epochs = grid.train[r.experiment]["epochs"]
        if n_train is None or not macs_of(r.dataset, r.arch):
            unknown.add(r.dataset)
            continue
        examples_epochs += epochs * n_train
        gpu_flops += epochs * n_train * 6.0 * macs_of(r.dataset, r.arch)
    mask_seconds = 0.0
    for dataset, arch, method, _, _ in masks:
        entry = grid.methods[method]
        mask_seconds += MASK_OVERHEAD_S + _mask_flops(entry.name, entry.options, macs_of(dataset, arch)) / CPU_FLOPS
    return {**size, "example_epochs": examples_epochs, "gpu_hours": gpu_flops / GPU_FLOPS / 3600,
            "mask_cpu_hours": mask_seconds / 3600, "not_estimated": sorted(unknown)}


def describe(size: dict) -> list[str]:
    """The lines check-config prints, warnings last."""
    lines = [
        f"  jobs: about {size['jobs']:,} ({size['masks']:,} masks, {size['train_jobs']:,} training jobs, "
        f"{size['runs']:,} evaluations, data preparation, tables and figures)",
    ]
    if "gpu_hours" not in size:
        lines.append("  (compute estimate: paibench check-config --estimate)")
    else:
        lines += [
            f"  training: {size['example_epochs']:,} example-epochs, roughly {size['gpu_hours']:,.1f} GPU-hours at "
            f"{GPU_FLOPS / 1e12:.0f} TFLOP/s sustained" + (
                f" (not estimated: {', '.join(size['not_estimated'])}: size or FLOPs unknown before preparing)"
                if size["not_estimated"] else ""),
            f"  masks: roughly {size['mask_cpu_hours']:,.1f} CPU-hours",
        ]
    if size["runs"] > WARN_RUNS:
        lines.append(f"warning: {size['runs']:,} runs is a very large grid (more than {WARN_RUNS:,}): planning alone "
                     f"takes minutes; split it into several configs unless this is intended")
    if size.get("gpu_hours", 0.0) > WARN_GPU_HOURS:
        lines.append(f"warning: about {size['gpu_hours']:,.0f} GPU-hours of training (more than {WARN_GPU_HOURS:,.0f}); "
                     f"check epochs, seeds and compressions")
    return lines
