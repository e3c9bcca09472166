"""``runs.csv`` (one row per run) and a mean +- std table over seeds, from the metrics files.

Rows come from :func:`paibench.analysis.results.run_record`, the one loader of run results (the figures
and the paper tables use it too). A run's key is its path below ``results/runs``:
``<experiment>/<dataset>/<arch>/<method>/c<ratio>/s<seed>``; the table labels are those path parts. Every
accuracy is in percent and its column says so (``accuracy_pct``, ``accuracy_mean_pct``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paibench.analysis.results import load_runs
from paibench.utils import atomic_path

# Frame columns that name files of this machine or repeat the key: not written to runs.csv.
NOT_IN_CSV = ("metrics_file",)


def collect(metrics_files) -> pd.DataFrame:
    runs = load_runs(metrics_files)
    return runs.drop(columns=[c for c in NOT_IN_CSV if c in runs.columns])


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (experiment, dataset, arch, method, compression); diverged runs count as missing."""
    keys = ["experiment", "dataset", "arch", "method", "compression"]
    grouped = runs.groupby(keys, sort=True)
    out = grouped.agg(
        accuracy_mean_pct=("accuracy_pct", "mean"),
        accuracy_std_pct=("accuracy_pct", "std"),
        effective_compression_mean=("effective_compression", "mean"),
        nominal_compression_mean=("nominal_compression", "mean"),
        macs_kept_mean=("macs_kept", "mean"),
        macs_effective_mean=("macs_effective", "mean"),
        collapsed_fraction=("collapsed", "mean"),
        seeds=("seed", "count"),
        diverged=("status", lambda s: int((s == "diverged").sum())),
    ).reset_index()
    return out


def write_tables(runs: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs)
    paths = {"runs": out_dir / "runs.csv", "summary": out_dir / "summary.csv", "markdown": out_dir / "summary.md"}
    with atomic_path(paths["runs"]) as tmp:
        runs.to_csv(tmp, index=False)
    with atomic_path(paths["summary"]) as tmp:
        summary.to_csv(tmp, index=False)
    md = summary.copy()
    md["accuracy (%)"] = [
        "diverged" if pd.isna(m) else (f"{m:.2f} ± {s:.2f}" if pd.notna(s) else f"{m:.2f}")
        for m, s in zip(md["accuracy_mean_pct"], md["accuracy_std_pct"])
    ]
    md = md[["experiment", "dataset", "arch", "method", "compression", "effective_compression_mean",
             "accuracy (%)", "seeds", "collapsed_fraction"]]
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(_markdown(md))
    return paths


def _markdown(df: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
