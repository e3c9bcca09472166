"""Whole-workflow throughput, side by side with an earlier commit ("today's way"); prints tables (+ JSON).

Each variant is an export of one git revision (`git archive`) in a scratch folder, run with this checkout's
virtualenv and the export's own package first on PYTHONPATH, with no committed results, so everything is
computed from nothing:

  grid     the default offline grid (config/config.yaml) with `snakemake --cores 2`: wall time, jobs, the size
           of Snakemake's metadata records, and whether every run's metrics (and the command its metrics.json
           records) equal between the variants (same seeds -> same numbers)
  dryrun   `snakemake -n` on a 10,000-run grid (2 datasets x 5 archs x 15 methods x 14 ratios x 5 seeds,
           minus duplicate dense runs): wall time and peak memory
  masks    a sweep of data-free masks (random, erk, mica(erk), rpi(erk) on VGG-16; the offline digits shape,
           since the workflow prepares a mask's dataset first and CIFAR-10 cannot be downloaded here) with
           `snakemake --cores 1`: wall time against the sum of the masks' own work (make_mask's `seconds`:
           model at init, method, statistics, file), so the rest is process start-up, imports and Snakemake

    python benchmarks/bench_workflow.py --base 4c9ef99 --parts grid dryrun masks --out results/benchmarks/workflow_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _report import cpu_name, markdown_table, publish

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

DRYRUN_GRID = {
    "datasets": {"cifar10": {}, "cifar100": {}},
    "train": {"epochs": 1},
    "experiments": {"big": {
        "datasets": ["cifar10", "cifar100"],
        "archs": ["vgg16", "resnet20", "resnet32", "resnet56", "wrn28_4"],
        "methods": ["dense", "random", "erk", "igq", "snip", "grasp", "synflow", "magnitude", "force", "iter_snip",
                    {"name": "mica", "budget": "erk"}, {"name": "mica", "budget": "snip"},
                    {"name": "rpi", "budget": "erk"}, {"name": "mica", "budget": "igq"},
                    {"name": "mica", "budget": "synflow"}],
        "compressions": [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000],
        "seeds": [0, 1, 2, 3, 4],
    }},
}


def mask_grid(seeds: int, width: float, batch: int = 0) -> dict:
    """The sweep's config; `batch` > 0 sets resources.mask_batch (masks per job; 0: the workflow's default)."""
    return {
        **({"resources": {"mask_batch": batch}} if batch else {}),
        "experiments": {"sweep": {
            "datasets": ["digits"], "archs": [{"name": "vgg16", "width": width}],
            "methods": ["random", "erk", {"name": "mica", "budget": "erk"}, {"name": "rpi", "budget": "erk"}],
            "compressions": [round(10 ** (0.5 * k), 3) for k in range(1, 13)],  # 10^0.5 ... 10^6
            "seeds": list(range(seeds)),
        }},
    }


def export(rev: str, dest: Path) -> Path:
    """The tree of `rev` (or the working tree for 'WORKTREE') without committed results."""
    dest.mkdir(parents=True)
    if rev == "WORKTREE":
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.split("\n")
        for f in filter(None, files):
            if (REPO / f).is_file():
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f, dest / f)
    else:
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    shutil.rmtree(dest / "results", ignore_errors=True)
    return dest


def env_for(tree: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "OMP_NUM_THREADS": "1"}


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS of the command's process tree in MB, exit code)."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M", *cmd], cwd=cwd, env=env, stdout=f,
                              stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    rss = [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("MAXRSS_KB")]
    return wall, (rss[-1] / 1024 if rss else float("nan")), proc.returncode


def job_counts(log: Path) -> dict[str, int]:
    lines = log.read_text().splitlines()
    if "Job stats:" not in lines:
        return {}
    counts: dict[str, int] = {}
    for line in lines[lines.index("Job stats:") + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] == "total":
            continue
        name = parts[0].rsplit("_", 1)[0] if parts[0].startswith(("mask_batch_", "train_pack_")) else parts[0]
        counts[name] = counts.get(name, 0) + int(parts[1])
    return counts


def metrics_of(tree: Path, keep=("accuracy", "final_test_acc", "final_train_loss", "best_test_acc", "kept",
                                  "status")) -> dict[str, dict]:
    out = {}
    for f in sorted((tree / "results" / "runs").rglob("metrics.json")):
        m = json.loads(f.read_text())
        out[m["run_key"]] = {k: m.get(k) for k in keep}
    return out


def metadata_mb(tree: Path) -> float:
    """Size of Snakemake's metadata records (one per output file; each holds its job's shell command)."""
    files = (tree / ".snakemake" / "metadata").glob("*")
    return round(sum(f.stat().st_size for f in files if f.is_file()) / 1e6, 2)


def snakemake(tree: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(tree / "Snakefile"), "-d", str(tree), *args]


def part_grid(variants: dict[str, Path], scratch: Path) -> list[dict]:
    rows = []
    for name, tree in variants.items():
        wall, rss, rc = timed(snakemake(tree, "--cores", "2"), tree, env_for(tree), scratch / f"grid-{name}.log")
        jobs = job_counts(scratch / f"grid-{name}.log")
        rows.append({"part": "grid", "variant": name, "wall_s": round(wall, 1), "exit": rc,
                     "jobs": sum(v for k, v in jobs.items() if k != "all"), "job_kinds": jobs,
                     "runs": len(metrics_of(tree)), "metadata_mb": metadata_mb(tree)})
    names = list(variants)
    base, new = metrics_of(variants[names[0]]), metrics_of(variants[names[-1]])
    same = base.keys() == new.keys() and all(base[k] == new[k] for k in base)
    differing = [k for k in base if k in new and base[k] != new[k]]
    # the command each run's metrics.json records to reproduce it (a packed run's names only its own member)
    commands = [metrics_of(variants[n], keep=("command",)) for n in (names[0], names[-1])]
    for r in rows:
        r["metrics_equal_to_base"] = same
        r["runs_differing"] = len(differing) + len(base.keys() ^ new.keys())
        r["commands_equal_to_base"] = commands[0] == commands[1]
    return rows


def part_dryrun(variants: dict[str, Path], scratch: Path) -> list[dict]:
    rows = []
    for name, tree in variants.items():
        work = scratch / f"dry-{name}"
        work.mkdir()
        (work / "grid.yaml").write_text(yaml.safe_dump(DRYRUN_GRID, sort_keys=False))
        cmd = [str(BIN / "snakemake"), "-s", str(tree / "Snakefile"), "-d", str(work), "--configfile",
               str(work / "grid.yaml"), "-n", "--cores", "2"]
        wall, rss, rc = timed(cmd, work, env_for(tree), scratch / f"dry-{name}.log")
        jobs = job_counts(scratch / f"dry-{name}.log")
        rows.append({"part": "dryrun", "variant": name, "wall_s": round(wall, 1), "peak_rss_mb": round(rss),
                     "exit": rc, "jobs": sum(v for k, v in jobs.items() if k != "all"), "job_kinds": jobs})
    return rows


def part_masks(variants: dict[str, Path], scratch: Path, seeds: dict[str, int], width: float,
               batch: int = 0) -> list[dict]:
    rows = []
    for name, tree in variants.items():
        work = scratch / f"masks-{name}"
        work.mkdir()
        grid = mask_grid(seeds[name], width, batch if name == "new" else 0)
        (work / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
        targets = subprocess.run(
            [sys.executable, "-c", "import sys, yaml; from paibench.config import Grid; "
             "print('\\n'.join(sorted({r.mask for r in Grid(yaml.safe_load(open(sys.argv[1]))).runs})))",
             str(work / "grid.yaml")], env=env_for(tree), capture_output=True, text=True, check=True).stdout.split()
        cmd = [str(BIN / "snakemake"), "-s", str(tree / "Snakefile"), *targets, "-d", str(work), "--cores", "1",
               "--configfile", str(work / "grid.yaml")]
        wall, rss, rc = timed(cmd, work, env_for(tree), scratch / f"masks-{name}.log")
        stats = [json.loads((work / t).with_suffix(".json").read_text()) for t in targets
                 if (work / t).with_suffix(".json").exists()]
        own = sum(s["seconds"] for s in stats)
        jobs = job_counts(scratch / f"masks-{name}.log")
        rows.append({"part": "masks", "variant": name, "masks": len(targets), "made": len(stats),
                     "wall_s": round(wall, 1), "mask_work_s": round(own, 1),
                     "outside_mask_work_pct": round(100 * (wall - own) / wall, 1),
                     "per_mask_outside_s": round((wall - own) / max(1, len(stats)), 3), "exit": rc,
                     "jobs": sum(jobs.values()), "width": width, "mask_batch": (batch or "default") if name == "new" else 1})
        shutil.rmtree(work / "results" / "masks", ignore_errors=True)  # up to 15 MB per mask at width 1
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="git revision of today's way (e.g. the commit before a change)")
    ap.add_argument("--new", default="WORKTREE", help="git revision to compare (default: the working tree)")
    ap.add_argument("--parts", nargs="+", default=["grid", "dryrun", "masks"], choices=["grid", "dryrun", "masks"])
    ap.add_argument("--mask-seeds", type=int, default=21, help="seeds of the mask sweep (4 x 12 x seeds masks)")
    ap.add_argument("--base-mask-seeds", type=int, default=1, help="seeds of today's way (one process per mask)")
    ap.add_argument("--mask-width", type=float, default=0.25)
    ap.add_argument("--mask-batch", type=int, default=0,
                    help="resources.mask_batch of the new variant's sweep (0: the workflow's default)")
    ap.add_argument("--scratch", help="scratch folder (default: a new temp folder, removed afterwards)")
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    args = ap.parse_args()

    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="paibench-bench-"))
    rows = []
    try:
        for part in args.parts:
            variants = {"base": export(args.base, scratch / part / "base"), "new": export(args.new, scratch / part / "new")}
            if part == "grid":
                rows += part_grid(variants, scratch / part)
            elif part == "dryrun":
                rows += part_dryrun(variants, scratch / part)
            else:
                rows += part_masks(variants, scratch / part, {"base": args.base_mask_seeds, "new": args.mask_seeds},
                                   args.mask_width, args.mask_batch)
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    rev = lambda r: subprocess.run(["git", "rev-parse", "--short", r], cwd=REPO, capture_output=True,  # noqa: E731
                                   text=True).stdout.strip() if r != "WORKTREE" else "working tree of " + \
        subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    cpu = cpu_name()
    meta = {"base": rev(args.base), "new": rev(args.new), "cpu": cpu, "nproc": os.cpu_count(),
            "python": platform.python_version(), "command": "python benchmarks/bench_workflow.py " + " ".join(
                "SCRATCH" if args.scratch and a == args.scratch else a for a in sys.argv[1:])}  # no machine path
    lines = ["# Workflow throughput (CPU)", "", f"base = {meta['base']} (today's way), new = {meta['new']}; "
             f"{meta['cpu']}, {meta['nproc']} cores; Python {meta['python']}.", "", f"Command: `{meta['command']}`", ""]
    for part in args.parts:
        part_rows = [r for r in rows if r["part"] == part]
        cols = [k for k in part_rows[0] if k not in ("part", "job_kinds")]
        lines += [f"## {part}", "", *markdown_table(part_rows, cols)]
        kinds = "; ".join(f"{r['variant']}: {r['job_kinds']}" for r in part_rows if r.get("job_kinds"))
        lines += ["", f"jobs per rule: {kinds}", ""] if kinds else [""]
    publish(args.out, lines, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
