"""The overview figure of every experiment (rule `plot`), drawn from the aggregated runs table.

It is figure 1 of analysis.figures (accuracy against compression, a band over seeds, dense as a
reference line, collapsed and diverged runs marked), fed from runs.csv instead of the metrics files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paibench.analysis import figures


def accuracy_vs_compression(runs: pd.DataFrame, out_png: str | Path, x: str = "compression") -> list[Path]:
    """`x`: compression or nominal_compression (the nominal axis), or effective_compression."""
    df = runs.copy()
    df["collapsed"] = df["collapsed"].astype(str).str.lower().eq("true")  # CSV: True/False
    df["diverged"] = df["status"] == "diverged"
    for col in ("accuracy_pct", "nominal_compression", "effective_compression"):
        df[col] = pd.to_numeric(df[col], errors="coerce")  # a collapsed run's effective compression reads as inf
    df["accuracy_pct"] = df["accuracy_pct"].where(df["status"] == "ok")
    axis = "effective" if x.startswith("effective") else "nominal"
    return figures.accuracy_vs_compression(df, Path(out_png), axis)
