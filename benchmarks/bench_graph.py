"""GCN and GIN epochs on Cora and CiteSeer on the dense path and on the sparse path (CSR features and adjacency).

Each cell trains the same masked run (ERK at 10x, the planetoid validation's recipe: Adam lr 0.01, weight
decay 5e-4, constant schedule, accuracy at the best validation epoch) through paibench's engine
(`train_run`), once with `feature_product: dense` and once with `sparse`, on one CPU thread, and reads each
epoch's time (its training step plus its evaluation) from epochs.csv, and each run's wall time. Both give the
same products up to float summation order, so accuracies may differ in the last digits of a logit and, rarely,
in a prediction. The sparse run is trained a second time with a checkpoint after every epoch
(`checkpoint_interval_s: 0`, what the engine did before that option): its wall time shows what the checkpoints
cost. A third network, the same but fed one constant input feature per node (ERK mask of its own), has a first
layer of 1 x hidden weights: its epoch is everything a feature product, sparse or not, leaves to do (hidden layers,
adjacency products, batch norm, dropout, loss, optimizer), so dense_epoch / one_feature_epoch bounds the speed-up
any feature product can give (column `bound_x`). Needs the Planetoid raw files (../shared/data/planetoid). With
--profile, each cell's sparse run is profiled once more (torch.profiler, 20 epochs): the operators that take most
of a sparse epoch, which bound what the sparse path can give.

    python benchmarks/bench_graph.py --out results/benchmarks/graph_cpu
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from _report import cpu_environment, publish_report  # noqa: E402
from paibench.data import DATASETS, save_prepared  # noqa: E402
from paibench.pruning import make_mask  # noqa: E402
from paibench.training import RunSpec, parse_train_config, train_run  # noqa: E402

RECIPE = {"optimizer": "adam", "lr": 0.01, "weight_decay": 5e-4, "schedule": "constant", "report": "best",
          "device": "cpu"}


def one_run(data: Path, mask: Path, arch: str, hidden: int, seed: int, mode: str, epochs: int, work: Path,
            checkpoint_interval_s: float | None = None) -> dict:
    """One run; epoch times from its epochs.csv, and its wall time (model building, checkpoints and output
    files included). ``checkpoint_interval_s``: the engine's default unless given (0: after every epoch)."""
    interval = {} if checkpoint_interval_s is None else {"checkpoint_interval_s": checkpoint_interval_s}
    cfg = parse_train_config({**RECIPE, "epochs": epochs, "feature_product": mode, **interval})
    tag = f"{mask.stem}-{mode}-{checkpoint_interval_s}"
    spec = RunSpec(data=str(data), mask=str(mask), out_dir=str(work / tag), checkpoint=str(work / f"{tag}.pt"),
                   run_key=f"bench/{mask.stem}", train=cfg, dataset="", arch=arch, width=1.0,
                   arch_options={"hidden": hidden}, seed=seed, threads=1)
    started = time.perf_counter()
    metrics = train_run(spec, log=lambda *_: None)
    wall = time.perf_counter() - started
    rows = (work / tag / "epochs.csv").read_text().splitlines()
    seconds = [float(r.split(",")[-1]) for r in rows[1:]]
    return {"epoch_ms": 1000 * statistics.median(seconds[1:]), "total_s": sum(seconds), "wall_s": wall,
            "accuracy": 100 * metrics["accuracy"]}


def profile_run(data: Path, mask: Path, arch: str, hidden: int, work: Path, top: int = 5) -> str:
    """The `top` operators by own CPU time of a 20-epoch sparse run, as 'name share%' (dropout's Bernoulli
    sampling is aten::bernoulli_; dense products aten::mm / addmm)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        one_run(data, mask, arch, hidden, 0, "sparse", 20, work / "profile")
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    return ", ".join(f"{e.key.removeprefix('aten::')} {100 * e.self_cpu_time_total / total:.0f}%" for e in ops[:top])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="../shared/data/planetoid", help="Planetoid raw files")
    ap.add_argument("--datasets", nargs="+", default=["cora", "citeseer"])
    ap.add_argument("--archs", nargs="+", default=["gcn", "gin"])
    ap.add_argument("--hidden", nargs="+", type=int, default=[256, 64])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--profile", action="store_true", help="also list where each cell's sparse epoch goes")
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    args = ap.parse_args()
    if not Path(args.root).is_dir():
        print(f"--root: {args.root} is not a folder; expected the Planetoid raw files (../shared/data/planetoid)")
        return 2
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for dataset in args.datasets:
            spec = DATASETS.get(dataset)
            payload = spec.prepare(spec.parse_options({"root": args.root}), work / "raw")
            data = work / f"{dataset}.pt"
            save_prepared(payload, data)
            density = float((payload["x"] != 0).float().mean())
            one_feature = {**payload, "x": torch.ones(payload["x"].shape[0], 1)}  # the feature product made free
            data_one = work / f"{dataset}-one-feature.pt"
            save_prepared(one_feature, data_one)
            for arch in args.archs:
                for hidden in args.hidden:
                    cell = {"dense": [], "sparse": [], "sparse_every_epoch": [], "one_feature": []}
                    masks = [work / f"{dataset}-{arch}-{hidden}-s{seed}.safetensors" for seed in range(args.seeds)]
                    for seed, mask in enumerate(masks):
                        make_mask(dataset, arch, "erk", 10, seed, str(mask), arch_options={"hidden": hidden},
                                  payload=payload)
                        for mode in ("dense", "sparse"):
                            cell[mode].append(one_run(data, mask, arch, hidden, seed, mode, args.epochs, work))
                        cell["sparse_every_epoch"].append(one_run(data, mask, arch, hidden, seed, "sparse",
                                                                  args.epochs, work, checkpoint_interval_s=0))
                        mask_one = work / f"{dataset}-{arch}-{hidden}-s{seed}-one-feature.safetensors"
                        make_mask(dataset, arch, "erk", 10, seed, str(mask_one), arch_options={"hidden": hidden},
                                  payload=one_feature)
                        cell["one_feature"].append(one_run(data_one, mask_one, arch, hidden, seed, "dense",
                                                           args.epochs, work))
                    dense, sparse, free = (statistics.median(r["epoch_ms"] for r in cell[m])
                                           for m in ("dense", "sparse", "one_feature"))
                    rows.append({
                        "dataset": dataset, "nonzero_features_pct": round(100 * density, 2), "arch": arch,
                        "hidden": hidden, "dense_epoch_ms": round(dense, 1), "sparse_epoch_ms": round(sparse, 1),
                        "speedup": round(dense / sparse, 2), "one_feature_epoch_ms": round(free, 1),
                        "bound_x": round(dense / free, 2),
                        "dense_acc": [round(r["accuracy"], 1) for r in cell["dense"]],
                        "sparse_acc": [round(r["accuracy"], 1) for r in cell["sparse"]],
                        "dense_total_s": round(sum(r["total_s"] for r in cell["dense"]), 1),
                        "sparse_total_s": round(sum(r["total_s"] for r in cell["sparse"]), 1),
                        **{f"{m}_wall_s": round(sum(r["wall_s"] for r in cell[m]), 1)
                           for m in ("dense", "sparse", "sparse_every_epoch")},
                    })
                    if args.profile:
                        rows[-1]["sparse_epoch_top_ops"] = profile_run(data, masks[0], arch, hidden, work)
                    print(rows[-1], flush=True)
    publish_report(args.out, "Graph epochs on the CPU: dense path vs sparse path (CSR features and adjacency)",
                   f"{cpu_environment()} ERK 10x masks, {args.epochs} epochs, seeds 0..{args.seeds - 1}; epoch = one "
                   f"full-graph training step and its evaluation (median over epochs 2..{args.epochs}, then over "
                   f"seeds); accuracy: test accuracy (%) at the best validation epoch, per seed; *_total_s: the seeds' "
                   f"epoch times summed; *_wall_s: the seeds' whole runs (model building, checkpoints and output files "
                   f"included), with the engine's default checkpoint_interval_s, and for sparse_every_epoch with a "
                   f"checkpoint after every epoch (0); one_feature_epoch_ms: the same network fed one constant feature "
                   f"(a free feature product), bound_x = dense_epoch_ms / one_feature_epoch_ms: the most any feature product "
                   f"can speed an epoch up.", rows, epochs=args.epochs, seeds=args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
