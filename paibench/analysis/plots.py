"""Accuracy vs compression: one panel per dataset x arch, one line per method, a band over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def accuracy_vs_compression(runs: pd.DataFrame, out_png: str | Path, x: str = "compression") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from paibench.utils import atomic_path

    sns.set_theme(style="whitegrid", context="paper")
    df = runs.copy()
    df["panel"] = df["dataset"] + " / " + df["arch"]
    df["accuracy_pct"] = 100 * df["accuracy"]
    dense = df[df["method_name"] == "dense"].groupby("panel")["accuracy_pct"].mean()
    pruned = df[df["method_name"] != "dense"]
    panels = sorted(df["panel"].unique())
    cols = min(3, max(1, len(panels)))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    methods = sorted(pruned["method"].unique())
    palette = dict(zip(methods, sns.color_palette("tab10", max(1, len(methods)))))
    for ax, panel in zip(axes.flat, panels):
        sub = pruned[pruned["panel"] == panel]
        if not sub.empty:
            sns.lineplot(data=sub, x=x, y="accuracy_pct", hue="method", palette=palette, errorbar="sd",
                         marker="o", ax=ax, hue_order=[m for m in methods if m in set(sub["method"])])
            collapsed = sub[sub["collapsed"]]
            if not collapsed.empty:
                ax.scatter(collapsed[x], collapsed["accuracy_pct"], marker="x", color="black", zorder=5, label="collapsed")
        if panel in dense.index:
            ax.axhline(dense[panel], color="gray", linestyle="--", linewidth=1, label="dense")
        ax.set_xscale("log")
        ax.set_title(panel)
        ax.set_xlabel(("effective" if x.startswith("effective") else "nominal") + " compression ratio (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    out_png = Path(out_png)
    written = []
    for path in (out_png, out_png.with_suffix(".pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=150)
        written.append(path)
    plt.close(fig)
    return written
