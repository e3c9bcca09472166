"""Collect per-run metrics into ``runs.csv`` and a mean +- std table over seeds.

A run's key is its path below ``results/runs``: ``<experiment>/<dataset>/<arch>/<method>/c<ratio>/s<seed>``;
labels in the tables are those path parts, so they match the config's labels.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paibench.utils import atomic_path, read_json

KEY_PARTS = ("experiment", "dataset", "arch", "method", "compression_label", "seed_label")


def run_row(metrics_file: str | Path) -> dict:
    metrics_file = Path(metrics_file)
    m = read_json(metrics_file)
    row = dict(zip(KEY_PARTS, m["run_key"].split("/")))
    eval_file = metrics_file.with_name("eval.json")
    ev = read_json(eval_file) if eval_file.exists() else {}
    row.update({
        "method_name": m["method"],
        "compression": m["compression"],
        "nominal_compression": m["nominal_compression"],
        "effective_compression": m["effective_compression"],
        "collapsed": bool(m.get("collapsed")),
        # the MiCA reference's effective rule; empty for results made before it was recorded
        "effective_compression_mica": m.get("effective_compression_mica"),
        "collapsed_mica": m.get("collapsed_mica"),
        "seed": m["seed"],
        "status": m["status"],
        "accuracy": m["accuracy"],
        "final_test_acc": m["final_test_acc"],
        "best_test_acc": m["best_test_acc"],
        "eval_test_acc": ev.get("test_acc"),
        "kept": m["kept"],
        "prunable": m["prunable"],
        "epochs": m["train"]["epochs"],
        "wall_time_s": m["wall_time_s"],
        "device": m["device"],
    })
    return row


def collect(metrics_files) -> pd.DataFrame:
    rows = [run_row(f) for f in metrics_files]
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["experiment", "dataset", "arch", "method", "compression", "seed"]).reset_index(drop=True)
    return df


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (experiment, dataset, arch, method, compression); diverged runs count as missing."""
    keys = ["experiment", "dataset", "arch", "method", "compression"]
    grouped = runs.groupby(keys, sort=True)
    out = grouped.agg(
        accuracy_mean=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        effective_compression_mean=("effective_compression", "mean"),
        nominal_compression_mean=("nominal_compression", "mean"),
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
    md["accuracy"] = [
        "diverged" if pd.isna(m) else (f"{100 * m:.2f} ± {100 * s:.2f}" if pd.notna(s) else f"{100 * m:.2f}")
        for m, s in zip(md["accuracy_mean"], md["accuracy_std"])
    ]
    md = md[["experiment", "dataset", "arch", "method", "compression", "effective_compression_mean",
             "accuracy", "seeds", "collapsed_fraction"]]
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
