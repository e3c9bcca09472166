"""A pack of small runs on one CPU thread: interleaved (mode loop, what the workflow uses on the CPU) against
one vectorised model (mode vmap, the GPU path), side by side.

The runs are those of the default config's digits experiment for one architecture (its training recipe from
config/config.yaml; ERK masks at its compressions x seeds, made here), trained by `train_pack` in one process
per mode. Loop mode gives bitwise the results of one process per run; vmap batches the runs' convolutions into
grouped ones, so its float summation order differs and accuracies may move (reported per run). images/s: the
pack's training examples per second of wall time, summed over runs (evaluation included, as in a job).

    python benchmarks/bench_pack_cpu.py --out results/benchmarks/pack_cpu
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from _digits import digits_experiment, digits_recipe, prepare_digits  # noqa: E402
from _report import cpu_environment, publish_report  # noqa: E402
from paibench.pruning import make_mask  # noqa: E402
from paibench.training import RunSpec, parse_train_config, train_pack  # noqa: E402


def pack_once(data: Path, masks: list[tuple[Path, int]], arch: str, width: float, cfg: dict, mode: str,
              work: Path) -> dict:
    """One train_pack call over (mask file, seed) members in `mode`: its wall time and each run's accuracy."""
    specs = [RunSpec(data=str(data), mask=str(m), out_dir=str(work / mode / m.stem), checkpoint=str(work / f"{mode}-{m.stem}.pt"),
                     run_key=f"bench/{m.stem}", train=cfg, dataset="digits", arch=arch, width=width, arch_options={},
                     seed=seed, threads=1)
             for m, seed in masks]
    t0 = time.perf_counter()
    results = train_pack(specs, log=lambda *_: None, mode=mode)
    return {"wall_s": time.perf_counter() - t0, "acc": [100 * r["final_test_acc"] for r in results]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["vgg16:0.25", "resnet20:0.5"], help="ARCH:WIDTH")
    ap.add_argument("--epochs", type=int, default=0, help="0: the default config's epochs")
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    exp = digits_experiment()
    cfg = parse_train_config(digits_recipe(args.epochs))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, payload = prepare_digits(work)
        examples = len(payload["y_train"]) * cfg["epochs"]
        for item in args.archs:
            arch, width = item.split(":")[0], float(item.split(":")[1])
            masks = []
            for c in exp["compressions"]:
                for s in exp["seeds"]:
                    m = work / f"{arch}-c{c}-s{s}.safetensors"
                    make_mask("digits", arch, "erk", c, s, str(m), width=width, payload=payload)
                    masks.append((m, s))
            cell = {mode: pack_once(data, masks, arch, width, cfg, mode, work / arch) for mode in ("loop", "vmap")}
            loop, vmap = cell["loop"], cell["vmap"]
            rows.append({
                "arch": f"{arch} w{width:g}", "runs": len(masks), "epochs": cfg["epochs"],
                "loop_wall_s": round(loop["wall_s"], 1), "vmap_wall_s": round(vmap["wall_s"], 1),
                "loop_images_per_s": round(examples * len(masks) / loop["wall_s"]),
                "vmap_images_per_s": round(examples * len(masks) / vmap["wall_s"]),
                "speedup": round(loop["wall_s"] / vmap["wall_s"], 2),
                "loop_acc_mean": round(sum(loop["acc"]) / len(masks), 2),
                "vmap_acc_mean": round(sum(vmap["acc"]) / len(masks), 2),
                "max_abs_acc_diff": round(max(abs(a - b) for a, b in zip(loop["acc"], vmap["acc"])), 2),
            })
            print(rows[-1], flush=True)
    publish_report(args.out, "A pack of small runs on one CPU thread: mode loop vs mode vmap",
                   f"{cpu_environment()} Runs: the default config's digits experiment (ERK at {exp['compressions']} "
                   f"x seeds {exp['seeds']}), its recipe, {cfg['epochs']} epochs; one measurement per cell. "
                   f"Accuracies: final test accuracy %.", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
