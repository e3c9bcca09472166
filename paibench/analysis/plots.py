"""The overview figure of every experiment (rule `plot`), drawn from the aggregated runs table.

It is figure 1 of analysis.figures (accuracy against compression, a band over seeds, dense as a
reference line, collapsed and diverged runs marked), fed from runs.csv instead of the metrics files.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from paibench.analysis import figures


def accuracy_vs_compression(runs: pd.DataFrame, out_png: str | Path, x: str = "compression") -> list[Path]:
    """`x`: compression or nominal_compression (the nominal axis), or effective_compression."""
    df = runs.copy()
    df["collapsed"] = df["collapsed"].astype(str).str.lower().eq("true")  # CSV: True/False, empty for dense
    df["diverged"] = df["status"] == "diverged"
    for col in ("accuracy", "nominal_compression", "effective_compression"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["accuracy_pct"] = (100 * df["accuracy"]).where(df["status"] == "ok")
    # no weight carries signal: infinite effective compression, as figures.py expects
    df.loc[df["collapsed"] & df["effective_compression"].isna(), "effective_compression"] = math.inf
    axis = "effective" if x.startswith("effective") else "nominal"
    return figures.accuracy_vs_compression(df, Path(out_png), axis)
