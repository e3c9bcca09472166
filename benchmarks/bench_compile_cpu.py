"""`train.compile` on the CPU: one small digits run trained eagerly and with torch.compile, side by side.

Each cell trains the same masked run (ERK at 10x, the default config's digits recipe, one thread) through
paibench's engine (`train_run`) with `compile: false` and `compile: true`, and reads each epoch's time from
epochs.csv: the first epoch carries the compilation (torch.compile of the training forward and its backward;
evaluation stays eager), the median of the later ones is the steady state. The compiled run goes twice: with an
empty Inductor cache (a first run on a machine: `cold`), then, after `torch._dynamo.reset()`, with the cache
the first one filled (what a later process finds: `warm`). images/s: training images per
second of a steady epoch (its evaluation included). Compiled kernels sum in another order, so the accuracies
may differ a little (final test accuracy, %). Needs a C++ compiler (Inductor's CPU backend).

    python benchmarks/bench_compile_cpu.py --out results/benchmarks/compile_cpu
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

from _digits import digits_recipe, prepare_digits  # noqa: E402
from _report import cpu_environment, publish_report  # noqa: E402
from paibench.pruning import make_mask  # noqa: E402
from paibench.training import RunSpec, parse_train_config, train_run  # noqa: E402

def one_run(data: Path, mask: Path, arch: str, width: float, recipe: dict, compile_: bool, work: Path) -> dict:
    cfg = parse_train_config({**recipe, "compile": compile_})
    out = work / f"{mask.stem}-{compile_}"
    spec = RunSpec(data=str(data), mask=str(mask), out_dir=str(out), checkpoint=str(work / f"{out.name}.pt"),
                   run_key=f"bench/{mask.stem}", train=cfg, dataset="digits", arch=arch, width=width,
                   arch_options={}, seed=0, threads=1)
    started = time.perf_counter()
    metrics = train_run(spec, log=lambda *_: None)
    wall = time.perf_counter() - started
    seconds = [float(r.split(",")[-1]) for r in (out / "epochs.csv").read_text().splitlines()[1:]]
    return {"wall_s": wall, "first_epoch_s": seconds[0], "epoch_s": statistics.median(seconds[2:]),
            "acc": 100 * metrics["final_test_acc"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["vgg16:0.25", "resnet20:0.5"], help="ARCH:WIDTH")
    ap.add_argument("--epochs", type=int, default=0, help="0: the default config's epochs")
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    recipe = digits_recipe(args.epochs)
    if recipe["epochs"] < 3:
        print(f"--epochs: {recipe['epochs']} is too few; expected >= 3 (the steady state is epochs 3 on)")
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, payload = prepare_digits(work)
        images = len(payload["y_train"])
        for item in args.archs:
            arch, width = item.split(":")[0], float(item.split(":")[1])
            mask = work / f"{arch}-w{width:g}.safetensors"
            make_mask("digits", arch, "erk", 10, 0, str(mask), width=width, payload=payload)
            eager = one_run(data, mask, arch, width, recipe, False, work)
            # an Inductor cache of this architecture alone, empty at first (another folder per architecture)
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / f"inductor-{arch}-{width:g}")
            torch._dynamo.reset()
            compiled = one_run(data, mask, arch, width, recipe, True, work / "cold")
            torch._dynamo.reset()
            warm = one_run(data, mask, arch, width, recipe, True, work / "warm")
            rows.append({
                "arch": f"{arch} w{width:g}", "epochs": recipe["epochs"],
                "eager_wall_s": round(eager["wall_s"], 1), "compile_wall_s": round(compiled["wall_s"], 1),
                "eager_first_epoch_s": round(eager["first_epoch_s"], 2),
                "compile_first_epoch_cold_s": round(compiled["first_epoch_s"], 2),
                "compile_first_epoch_warm_s": round(warm["first_epoch_s"], 2),
                "eager_images_per_s": round(images / eager["epoch_s"]),
                "compile_images_per_s": round(images / compiled["epoch_s"]),
                "steady_speedup": round(eager["epoch_s"] / compiled["epoch_s"], 2),
                "eager_acc": round(eager["acc"], 2), "compile_acc": round(compiled["acc"], 2),
            })
            print(rows[-1], flush=True)
    publish_report(args.out, "torch.compile on the CPU: one digits run, eager vs compiled",
                   f"{cpu_environment()} One ERK 10x run per architecture with the default config's digits recipe, "
                   f"{recipe['epochs']} epochs, one measurement per cell; images/s from the median epoch after the "
                   f"second; accuracy: final test accuracy %.", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
