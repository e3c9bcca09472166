"""Time per RReg mask with the reference's graph search (best of 100 graphs by 1,000 subsets per side).

Prints a table: VGG-16 (RReg's layout, CIFAR-10 shape, width 1) at the reference's degrees, with and without
graph reuse (one graph per layer size, as the reference's graph cache), and the degree solved from a ratio.
Run: python benchmarks/bench_rreg.py [--out results/benchmarks/rreg_masks_cpu.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch

from paibench.pruning import make_mask

SEARCH = {"samples": 100, "subsets": 1000, "dense_layers": "last"}
CASES = [
    ("degree 3, reuse, collapse (rreg.yaml)", {"degree": 3, "graph_reuse": True, "multi_edges": "collapse"}, 10),
    ("degree 60, reuse, collapse (rreg.yaml)", {"degree": 60, "graph_reuse": True, "multi_edges": "collapse"}, 10),
    ("degree 3, no reuse, exact degrees", {"degree": 3}, 10),
    ("ratio 100 (degrees solved), reuse", {"graph_reuse": True}, 100),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table (Markdown) here")
    args = parser.parse_args()
    rows = []
    for name, opts, compression in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            stats = make_mask("cifar10", "vgg16_rreg", "rreg", compression, 0, os.path.join(tmp, "m.safetensors"),
                              options={**SEARCH, **opts})
            seconds = time.perf_counter() - started
        rows.append((name, seconds, stats["nominal_compression"]))
        print(f"{name:42s} {seconds:8.1f} s   nominal {stats['nominal_compression']:.4g}x", flush=True)
    header = (f"RReg masks, VGG-16 (vgg16_rreg, width 1, CIFAR-10 shape), samples=100 subsets=1000, last Linear dense; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
    table = [header, "", "| case | seconds per mask | nominal compression |", "|---|---:|---:|"]
    table += [f"| {n} | {s:.1f} | {c:.4g}x |" for n, s, c in rows]
    print("\n".join(table))
    if args.out:
        with open(args.out, "w") as f:
            f.write("Command: `python benchmarks/bench_rreg.py --out " + args.out + "`\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
