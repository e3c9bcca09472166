"""How big a grid is before it runs: jobs, training work and rough mask and GPU hours (``check-config``).

The hours are order-of-magnitude estimates from the recipe and the networks' multiply-accumulates (MACs),
at the sustained rates below; they exist to catch a grid that is far larger than intended before
Snakemake spends minutes planning it.
"""

from __future__ import annotations

from pathlib import Path

from paibench.data import DATASETS

GPU_FLOPS = 50e12  # sustained training FLOP/s assumed for one modern GPU (bf16 CNN training)
CPU_FLOPS = 5e10  # sustained FLOP/s of one mask job on a few CPU cores
MASK_OVERHEAD_S = 2.0  # process start, model build and statistics of one mask job
# Per prunable weight, measured on one AMD EPYC thread (VGG-16 on digits, widths 0.25 and 1): building the model,
# the statistics and the file of a mask (~0.5 s for VGG-16's 15 M weights), and one pruning round's ranking of
# all scores (SynFlow's rounds, FORCE's and Iterative SNIP's T; SynFlow's 100 rounds: ~8 s there).
WEIGHT_S = 3.3e-8
WEIGHT_ROUND_S = 5e-9
WARN_RUNS = 10_000
WARN_GPU_HOURS = 1_000.0


def model_size(arch: str, info, width: float, options: dict) -> tuple[int, int]:
    """(multiply-accumulates of one forward pass of one example over the conv and linear layers, prunable
    weights), on the meta device; (0, weights) for an architecture that cannot run there."""
    import torch

    from paibench.models import build_model
    from paibench.models.base import example_input, prunable_parameters, weight_uses

    with torch.device("meta"):
        model = build_model(arch, info, width, options)
    params = prunable_parameters(model)
    weights = int(sum(p.numel() for p in params.values()))
    try:
        with torch.device("meta"):
            uses = weight_uses(model, tuple(t.to("meta") for t in example_input(info, batch=1)))
    except Exception:  # an architecture that cannot run on the meta device: no estimate
        return 0, weights
    return int(sum(params[n].numel() * u for n, u in uses.items())), weights


def forward_macs(arch: str, info, width: float, options: dict) -> int:
    """Multiply-accumulates of one forward pass of one example (conv and linear layers), on the meta device."""
    return model_size(arch, info, width, options)[0]


def mask_flops(method: str, options: dict, macs: int, num_classes: int = 10, train_examples: int | None = None) -> float:
    """Rough FLOPs of computing one mask (forward + backward = 3 forward passes of 2 FLOPs per MAC): the
    scoring passes its options ask for (SynFlow's rounds, the iterative methods' T, batches of images: SNIP's and
    FORCE's num_batches, GraSP's num_iters); 0 for data-free budget methods. ``num_batches: -1`` (a pass over the
    training split) counts the split's batches when ``train_examples`` is known, else one batch."""
    from paibench.pruning.methods import METHODS

    options = METHODS.get(method).with_defaults(options)
    step = 6.0 * macs
    passes = options.get("rounds") or options.get("T", 1)
    if "samples_per_class" not in options:  # no data batches: data-free (synflow scores one all-ones input)
        return passes * step if "rounds" in options else 0.0
    per_class = options["batching"] == "per_class"
    images = options["samples_per_class"] * num_classes if per_class else options["batch_size"]
    batches = int(options.get("num_batches", options.get("num_iters", 1)))
    if batches < 0:  # one pass over the training split
        batches = -(-train_examples // images) if train_examples else 1
    # GraSP: the gradient, then a Hessian-gradient product (a second backward through the first)
    return passes * max(1, batches) * images * step * (3 if method == "grasp" else 1)


class GridCosts:
    """Per-(dataset, arch) model sizes and per-mask compute estimates of a Grid, computed once each and lazily
    (building a model on the meta device imports torch)."""

    def __init__(self, grid):
        self.grid = grid
        self._size: dict[tuple, tuple[int, int]] = {}
        self._info: dict[str, object] = {}
        self._mask_s: dict[tuple, float] = {}
        self._scores: dict[str, bool] = {}
        self._payload: dict[str, dict | None] = {}

    def info(self, dataset: str):
        """The dataset's shape from its options, or else from its prepared file when that exists already
        (an image folder's shape is known only once it is read)."""
        if dataset not in self._info:
            entry = self.grid.datasets[dataset]
            spec = DATASETS.get(entry.type)
            self._info[dataset] = spec.info(entry.options) if spec.info else None
            if self._info[dataset] is None and self._prepared(dataset) is not None:
                from paibench.data.base import info_from_payload

                self._info[dataset] = info_from_payload(self._prepared(dataset))
        return self._info[dataset]

    def _prepared(self, dataset: str) -> dict | None:
        """The prepared file's payload, memory-mapped (its tensors are not read); None before it is prepared."""
        if dataset not in self._payload:
            from paibench import paths

            path = Path(paths.data(dataset))
            self._payload[dataset] = None
            if path.is_file():
                import torch

                try:
                    self._payload[dataset] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except Exception:  # unreadable or an older format: no estimate, as before it was prepared
                    pass
        return self._payload[dataset]

    def train_examples(self, dataset: str) -> int | None:
        entry = self.grid.datasets[dataset]
        spec = DATASETS.get(entry.type)
        if spec.train_examples:
            return spec.train_examples(entry.options)
        payload = self._prepared(dataset) if spec.info is None else None
        return int(payload["y_train"].shape[0]) if payload and "y_train" in payload else None

    def size(self, dataset: str, arch: str) -> tuple[int, int]:
        """(forward MACs of one example, prunable weights); (0, 0) where the dataset's shape is unknown before
        it is prepared (graphs)."""
        key = (dataset, arch)
        if key not in self._size:
            info = self.info(dataset)
            a = self.grid.archs[arch]
            self._size[key] = model_size(a.name, info, a.width, a.options) if info and info.kind == "image" else (0, 0)
        return self._size[key]

    def macs(self, dataset: str, arch: str) -> int:
        return self.size(dataset, arch)[0]

    def mask_work_s(self, dataset: str, arch: str, method: str) -> float:
        """Estimated seconds of making one mask in a running process on one CPU thread: the model, statistics
        and file (WEIGHT_S), each pruning round's ranking (WEIGHT_ROUND_S) and the scoring passes (CPU_FLOPS)."""
        key = (dataset, arch, method)
        if key not in self._mask_s:
            entry = self.grid.methods[method]
            info = self.info(dataset)
            macs, weights = self.size(dataset, arch)
            options = entry.options
            from paibench.pruning.methods import METHODS

            full = METHODS.get(entry.name).with_defaults(options)
            rounds = int(full.get("rounds") or full.get("T", 1))
            flops = mask_flops(entry.name, options, macs, info.num_classes if info else 10, self.train_examples(dataset))
            self._mask_s[key] = weights * (WEIGHT_S + rounds * WEIGHT_ROUND_S) + flops / CPU_FLOPS
        return self._mask_s[key]

    def scores(self, method: str) -> bool:
        """Whether a method of the grid runs scoring passes or pruning rounds (SNIP, GraSP, SynFlow, FORCE, ...)."""
        if method not in self._scores:
            entry = self.grid.methods[method]
            self._scores[method] = mask_flops(entry.name, entry.options, 1) > 0
        return self._scores[method]

    def run_mask_work_s(self, run) -> float:
        return self.mask_work_s(run.dataset, run.arch, run.method)


def grid_size(grid, compute: bool = False) -> dict:
    """Counts of a validated Grid; with `compute`, rough training and mask costs too (builds each
    architecture on the meta device for its multiply-accumulates: this part imports torch)."""
    masks = {(r.dataset, r.arch, r.method, r.compression, r.seed) for r in grid.runs}
    train_jobs = len(grid.packs(lambda run: False)) + sum(1 for r in grid.runs if grid.pack.get(r.experiment, 1) <= 1)
    size = {
        "runs": len(grid.runs), "experiments": len(grid.config["experiments"]), "masks": len(masks),
        "jobs": len(grid.datasets) + len(masks) + train_jobs + len(grid.runs) + 3 + len(grid.config["experiments"]),
        "train_jobs": train_jobs,
    }
    if not compute:
        return size
    costs = GridCosts(grid)
    gpu_flops, examples_epochs, unknown = 0.0, 0, set()
    for r in grid.runs:
        n_train = costs.train_examples(r.dataset)
        epochs = grid.train[r.experiment]["epochs"]
        if n_train is None or not costs.macs(r.dataset, r.arch):
            unknown.add(r.dataset)
            continue
        examples_epochs += epochs * n_train
        gpu_flops += epochs * n_train * 6.0 * costs.macs(r.dataset, r.arch)
    work = {(d, a, m): costs.mask_work_s(d, a, m) for d, a, m, _, _ in masks}
    mask_seconds = sum(MASK_OVERHEAD_S + work[d, a, m] for d, a, m, _, _ in masks)
    longest = max(work, key=work.get, default=None)
    return {**size, "example_epochs": examples_epochs, "gpu_hours": gpu_flops / GPU_FLOPS / 3600,
            "mask_cpu_hours": mask_seconds / 3600, "not_estimated": sorted(unknown),
            "longest_mask": {"dataset": longest[0], "arch": longest[1], "method": longest[2],
                             "minutes": work[longest] / 60} if longest else None,
            "mask_runtime": grid.resources["mask_runtime"]}


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
    longest = size.get("longest_mask")
    if longest and longest["minutes"] > size["mask_runtime"]:
        lines.append(f"warning: the longest mask ({longest['method']} on {longest['arch']}, {longest['dataset']}) is "
                     f"estimated at {longest['minutes']:,.0f} minutes on one CPU thread, more than "
                     f"resources.mask_runtime ({size['mask_runtime']} minutes): a cluster job making it would be "
                     f"stopped; raise mask_runtime or mask_threads")
    if size["runs"] > WARN_RUNS:
        lines.append(f"warning: {size['runs']:,} runs is a very large grid (more than {WARN_RUNS:,}): planning alone "
                     f"takes minutes; split it into several configs unless this is intended")
    if size.get("gpu_hours", 0.0) > WARN_GPU_HOURS:
        lines.append(f"warning: about {size['gpu_hours']:,.0f} GPU-hours of training (more than {WARN_GPU_HOURS:,.0f}); "
                     f"check epochs, seeds and compressions")
    return lines
