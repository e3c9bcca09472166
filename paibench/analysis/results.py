"""Load cached run results (metrics.json + the mask statistics JSON) into tidy pandas frames.

Figures and tables are drawn from these frames only, so they can be rebuilt from the committed small files
of ``results/`` without masks or model weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from paibench import paths
from paibench.names import MAC_KEYS
from paibench.analysis.style import arch_display, dataset_display, method_display
from paibench.utils import read_json

# How metrics.json's "report" and the effective definitions read in a table's budget line.
REPORT_LABELS = {
    "final": "last epoch",
    "best": "best epoch by test accuracy (test-set selection)",
    "best-val": "best epoch by validation accuracy",
    "max_test": "maximum test accuracy over all epochs (test-set selection, as the MiCA notebooks plot)",
}
DEFINITION_LABELS = {
    "paths": "paibench's input-output paths",
    "mica": "the MiCA reference's rule (trained-model BatchNorm shifts live)",
}

KEY_PARTS = ("experiment", "dataset", "arch", "method", "compression_label", "seed_label")


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _pct(value) -> float:
    return float("nan") if value is None else 100.0 * float(value)


# Accuracy columns of a run row: every accuracy is in percent, and its column name says so.
ACCURACY_COLUMNS = {  # column -> metrics.json key (a fraction there)
    "accuracy_pct": "accuracy", "final_test_acc_pct": "final_test_acc", "best_test_acc_pct": "best_test_acc",
    "max_test_acc_pct": "max_test_acc", "top5_accuracy_pct": "top5_accuracy",
}


def run_record(metrics_file: str | Path, effective_definition: str = "paths") -> dict:
    """One run's row; ``effective_compression``/``collapsed`` follow `effective_definition` (paths or mica).

    Accuracies are percentages (columns ending ``_pct``); a diverged run keeps its row with no accuracy.
    ``eval_test_acc_pct`` is the independent re-evaluation (eval.json beside metrics.json) when present.
    """
    from paibench.pruning.stats import effective_key

    metrics_file = Path(metrics_file)
    m = read_json(metrics_file)
    row = dict(zip(KEY_PARTS, m["run_key"].split("/")))
    train = m.get("train", {})
    nominal = _num(m.get("nominal_compression"))
    effective = _num(m.get(effective_key(effective_definition)))
    collapsed = bool(m.get(effective_key(effective_definition, "collapsed")))
    if collapsed and math.isnan(effective):
        effective = math.inf  # no weight carries signal: infinite effective compression
    status = m.get("status", "ok")
    eval_file = metrics_file.with_name(paths.EVAL)
    evaluated = read_json(eval_file) if eval_file.exists() else {}
    method_options = m.get("method_options") or {}
    row.update({
        "method_name": m["method"],
        "method_options": json.dumps(method_options, sort_keys=True),
        # names for legends and titles (analysis.style), the same in every figure and table
        "method_display": method_display(row["method"], m["method"], method_options),
        "arch_display": arch_display(row["arch"], m.get("arch", row["arch"]), m.get("arch_options")),
        "dataset_display": dataset_display(row["dataset"]),
        "compression": float(m["compression"]),
        "nominal_compression": nominal,
        "effective_compression": effective,
        "effective_definition": effective_definition,
        "sparsity_pct": 100.0 * (1.0 - 1.0 / float(m["compression"])),
        "remaining_pct": 100.0 / nominal if nominal and not math.isnan(nominal) else float("nan"),
        "effective_remaining_pct": 100.0 / effective if effective and not math.isnan(effective) else float("nan"),
        "collapsed": collapsed,
        "seed": int(m["seed"]),
        "status": status,
        "diverged": status == "diverged",
        **{col: (float("nan") if status != "ok" else _pct(m.get(key))) for col, key in ACCURACY_COLUMNS.items()},
        "eval_test_acc_pct": _pct(evaluated.get("test_acc")) if status == "ok" else float("nan"),
        "kept": m.get("kept"),
        "prunable": m.get("prunable"),
        # multiply-accumulates per example (empty for runs made before masks recorded them)
        **{col: _num(m.get(col)) for col in MAC_KEYS},
        "epochs": train.get("epochs"),
        "optimizer": train.get("optimizer"),
        "lr": train.get("lr"),
        "batch_size": train.get("batch_size"),
        "report": m.get("report"),
        "device": m.get("device"),
        "torch": m.get("torch"),
        "wall_time_s": _num(m.get("wall_time_s")),
        "metrics_file": str(metrics_file),
    })
    return row


def load_runs(metrics_files, effective_definition: str = "paths") -> pd.DataFrame:
    rows = [run_record(f, effective_definition) for f in metrics_files]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return df.sort_values(["experiment", "dataset", "arch", "method", "compression", "seed"]).reset_index(drop=True)


def mask_stats_path(masks_root: str | Path, row) -> Path:
    """The statistics JSON written beside a run's mask (paths.MASK_STATS, below `masks_root`)."""
    key = paths.MASK_KEY.format(dataset=row["dataset"], arch=row["arch"], method=row["method"],
                                compression=row["compression_label"].removeprefix("c"),
                                seed=row["seed_label"].removeprefix("s"))
    return Path(masks_root) / f"{key}.json"


def load_layers(runs: pd.DataFrame, masks_root: str | Path, effective_definition: str = "paths") -> pd.DataFrame:
    """One row per (run, prunable layer): density and effective density from the mask statistics JSON."""
    from paibench.pruning.stats import effective_key

    eff_key = effective_key(effective_definition, "effective_density")
    rows = []
    for _, run in runs.iterrows():
        path = mask_stats_path(masks_root, run)
        if not path.exists():
            continue
        stats = read_json(path)
        for index, layer in enumerate(stats.get("layers", [])):
            rows.append({
                "experiment": run["experiment"], "dataset": run["dataset"], "arch": run["arch"],
                "method": run["method"], "compression": run["compression"], "seed": run["seed"],
                "layer_index": index, "layer": layer["name"], "numel": layer["numel"],
                "density": layer["density"], "effective_density": layer.get(eff_key, float("nan")),
            })
    return pd.DataFrame(rows)


def budget(runs: pd.DataFrame) -> str:
    """One line naming the training budget and hardware the given runs came from (read from their metrics)."""
    if runs.empty:
        return "budget: no runs"

    def listed(col, fmt=str):
        values = sorted({v for v in runs[col].dropna().unique()}, key=lambda v: (str(type(v)), v))
        return ", ".join(fmt(v) for v in values) if values else "?"

    seeds = sorted(runs["seed"].unique())
    hours = np.nansum(runs["wall_time_s"].to_numpy(dtype=float)) / 3600.0
    diverged = int(runs["diverged"].sum())
    parts = [
        f"epochs: {listed('epochs', lambda v: f'{int(v)}')}",
        f"accuracy reported: {listed('report', lambda v: REPORT_LABELS.get(v, str(v)))}",
        f"effective compression: {listed('effective_definition', lambda v: DEFINITION_LABELS.get(v, str(v)))}",
        f"optimizer: {listed('optimizer')} (lr {listed('lr', lambda v: f'{v:g}')}, batch {listed('batch_size', lambda v: f'{int(v)}')})",
        f"seeds: {len(seeds)} ({', '.join(map(str, seeds))})",
        f"hardware: {listed('device')}",
        f"torch {listed('torch')}",
        f"{len(runs)} runs, {hours:.2f} h training in total",
    ]
    if diverged:
        parts.append(f"{diverged} diverged")
    return "budget: " + "; ".join(parts)
