"""The papers' figures for one experiment, drawn from cached results only (see ``results.load_runs``).

Every figure has one panel per dataset x architecture and one colour and marker per method, the same in every
figure of every experiment (``analysis.style``); legends and titles use display names. Seed variation is a mean +- std band; collapsed masks (no input-output path left)
are marked with a black x, diverged runs with a red triangle on the bottom edge.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from paibench.analysis.style import compression_text, method_style
from paibench.names import DENSE, FIGURES, FORCE_SPARSITIES  # noqa: F401 (FIGURES: the names drawn)
from paibench.utils import atomic_path



def _plt():
    """pyplot, headless, with the seaborn theme every figure shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    # Print-sized text: 'paper' context scaled up so a 2-column figure stays readable at column width.
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.3)
    return plt


def _panels(df: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted({(d, a) for d, a in zip(df["dataset"], df["arch"])})


def _grid(plt, n: int, width: float = 4.4, height: float = 3.5):
    cols = min(3, max(1, n))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)[:max(n, 1)]


def _palette(runs: pd.DataFrame) -> dict:
    """method label -> (display name, matplotlib style), ordered by display name; one style per method
    setting in every figure of every experiment (analysis.style), whatever else is drawn beside it."""
    rows = runs.drop_duplicates("method")
    entries = {}
    for _, r in rows.iterrows():
        display = r.get("method_display")  # absent (or empty) in a runs.csv from before display names
        display = display if isinstance(display, str) else r["method"]
        entries[r["method"]] = (display, method_style(r["method"], r["method_name"], r.get("method_options")))
    ordered = sorted(entries.items(), key=lambda kv: (kv[1][0], kv[0]))
    # Lines drawn first are drawn wider, so a line hidden exactly under a later one still shows as its rim.
    n = len(ordered)
    return {label: (display, {**style, "linewidth": 1.5 + 1.5 * (n - 1 - i) / max(1, n - 1)})
            for i, (label, (display, style)) in enumerate(ordered)}


def _title(here: pd.DataFrame, dataset: str, arch: str) -> str:
    """'CIFAR-10 / VGG-16, width 0.25': the panel's display names (its labels when it has no runs)."""
    if len(here):
        dataset, arch = here.iloc[0].get("dataset_display", dataset), here.iloc[0].get("arch_display", arch)
    return f"{dataset} / {arch}"


def _save(fig, out_png: Path) -> list[Path]:
    """Lay out, write PNG and PDF atomically, and close the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    written = []
    for path in (out_png, out_png.with_suffix(".pdf")):
        with atomic_path(path) as tmp:
            # No timestamps in the files, so rebuilding from the same results gives the same committed bytes.
            meta = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
            fig.savefig(tmp, format=path.suffix[1:], dpi=200, bbox_inches="tight", metadata=meta)
        written.append(path)
    plt.close(fig)
    return written


def _empty(ax, text="no runs"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _seed_stats(sub: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Mean and std of y over seeds per compression setting; x is the geometric mean of its finite values."""
    def gmean(v):
        v = v[np.isfinite(v) & (v > 0)]
        return float(np.exp(np.log(v).mean())) if len(v) else math.inf

    out = sub.groupby("compression").agg(
        x=(x, lambda s: gmean(s.to_numpy(dtype=float))),
        mean=(y, "mean"), std=(y, "std"), n=(y, "count"),
    ).reset_index()
    return out.sort_values("x")


def _line(ax, x, y, style: dict, label):
    """One method's line: its colour, marker and line style; slightly transparent with hollow-edged markers,
    so lines drawn on top of each other stay visible."""
    ax.plot(x, y, marker=style["marker"], markersize=5, color=style["color"], linestyle=style["linestyle"],
            linewidth=style.get("linewidth", 1.6), alpha=0.9, markeredgecolor="white", markeredgewidth=0.6,
            label=label)


def _band(ax, stats: pd.DataFrame, style: dict, label):
    stats = stats[np.isfinite(stats["x"]) & stats["mean"].notna()]
    if stats.empty:
        return
    _line(ax, stats["x"], stats["mean"], style, label)
    std = stats["std"].fillna(0.0)
    ax.fill_between(stats["x"], stats["mean"] - std, stats["mean"] + std, color=style["color"], alpha=0.15,
                    linewidth=0)


def _mark_diverged(ax, sub: pd.DataFrame, x: str, labelled: set):
    div = sub[sub["diverged"]]
    if div.empty:
        return
    label = None if "diverged" in labelled else "diverged run"
    labelled.add("diverged")
    xs = div[x].where(np.isfinite(div[x]), div["compression"])
    ax.scatter(xs, np.full(len(div), 0.03), transform=ax.get_xaxis_transform(), marker="v", color="tab:red",
               s=30, zorder=6, label=label, clip_on=False)


def _legend(ax):
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=8.5, loc="best", frameon=True, framealpha=0.85)


def accuracy_label(runs: pd.DataFrame) -> str:
    """The accuracy axis says how the epoch was chosen when it was chosen on the test set."""
    reports = set(runs.get("report", pd.Series(dtype=object)).dropna())
    if reports & {"max_test", "best"}:
        return "test accuracy (%), best epoch chosen on the test set"
    return "test accuracy (%)"


# --------------------------------------------------------------------------------------------- figures
def accuracy_vs_compression(runs: pd.DataFrame, out_png: Path, axis: str = "nominal") -> list[Path]:
    """Figure 1: test accuracy against nominal or effective compression, dense accuracy as a reference."""
    plt = _plt()
    xcol = "nominal_compression" if axis == "nominal" else "effective_compression"
    panels = _panels(runs)
    pruned = runs[runs["method_name"] != DENSE]
    palette = _palette(pruned)
    fig, axes = _grid(plt, len(panels))
    for ax, (dataset, arch) in zip(axes, panels):
        here = runs[(runs["dataset"] == dataset) & (runs["arch"] == arch)]
        sub = here[here["method_name"] != DENSE]
        labelled: set = set()
        finite_x = sub[xcol][np.isfinite(sub[xcol])]
        right = float(finite_x.max()) * 1.6 if len(finite_x) else 10.0
        for method, (display, style) in palette.items():
            msub = sub[sub["method"] == method]
            if msub.empty:
                continue
            _band(ax, _seed_stats(msub, xcol, "accuracy_pct"), style, display)
            col = msub[msub["collapsed"] & msub["accuracy_pct"].notna()]
            if not col.empty:
                # A collapsed mask has infinite effective compression: drawn at the right edge of that axis.
                xs = col[xcol].where(np.isfinite(col[xcol]), right)
                ax.scatter(xs, col["accuracy_pct"], marker="x", color="black", s=28, zorder=5,
                           label=None if "collapsed" in labelled else
                           ("collapsed (eff. ∞, at right)" if axis == "effective" else "collapsed mask"))
                labelled.add("collapsed")
            _mark_diverged(ax, msub, xcol, labelled)
        dense = here[here["method_name"] == DENSE]["accuracy_pct"].dropna()
        if len(dense):
            ax.axhline(dense.mean(), color="0.3", linestyle="--", linewidth=1.2, label=f"dense ({dense.mean():.1f}%)")
        if sub.empty and dense.empty:
            _empty(ax)
        else:
            ax.set_xscale("log")
        ax.set_title(_title(here, dataset, arch))
        ax.set_xlabel(f"{axis} compression ratio (×, log scale)")
        ax.set_ylabel(accuracy_label(runs))
        _legend(ax)
    return _save(fig, Path(out_png))


def _pruned_panels(runs: pd.DataFrame):
    """Figure, and per (dataset, arch) panel its axis, title and the pruned runs of each method.

    Yields (ax, sub, series): sub holds the panel's pruned runs, series maps method -> ((display, style), its runs),
    methods without runs left out. Panels without pruned runs are marked empty and not yielded.
    """
    plt = _plt()
    pruned = runs[runs["method_name"] != DENSE]
    panels = _panels(pruned) or _panels(runs)
    palette = _palette(pruned)
    fig, axes = _grid(plt, len(panels))

    def per_panel():
        for ax, (dataset, arch) in zip(axes, panels):
            sub = pruned[(pruned["dataset"] == dataset) & (pruned["arch"] == arch)]
            if sub.empty:
                _empty(ax)
                continue
            ax.set_title(_title(sub, dataset, arch))
            series = {m: (entry, sub[sub["method"] == m]) for m, entry in palette.items()}
            yield ax, sub, {m: v for m, v in series.items() if not v[1].empty}

    return fig, per_panel()


def effective_vs_nominal(runs: pd.DataFrame, out_png: Path) -> list[Path]:
    """Figure 2: effective against nominal compression; the diagonal is 'nothing silently disconnected'."""
    fig, panels = _pruned_panels(runs)
    for ax, sub, series in panels:
        labelled: set = set()
        for method, ((display, style), msub) in series.items():
            stats = msub.groupby("compression").agg(
                x=("nominal_compression", "mean"),
                y=("effective_compression", lambda s: float(np.exp(np.log(s[np.isfinite(s)]).mean())) if np.isfinite(s).any() else math.inf),
            ).reset_index()
            fin = stats[np.isfinite(stats["y"])]
            _line(ax, fin["x"], fin["y"], style, display)
            col = msub[~np.isfinite(msub["effective_compression"])]
            if not col.empty:
                ax.scatter(col["nominal_compression"], np.full(len(col), 0.97), transform=ax.get_xaxis_transform(),
                           marker="x", color="black", s=28, zorder=5, clip_on=False,
                           label=None if "collapsed" in labelled else "collapsed (effective = ∞)")
                labelled.add("collapsed")
        lo = float(sub["nominal_compression"].min())
        hi = float(np.nanmax(np.where(np.isfinite(sub["effective_compression"]), sub["effective_compression"], np.nan).tolist() + [sub["nominal_compression"].max()]))
        ax.plot([lo, hi], [lo, hi], color="0.5", linestyle=":", linewidth=1, label="effective = nominal")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nominal compression ratio (×, log scale)")
        ax.set_ylabel("effective compression ratio (×, log scale)")
        _legend(ax)
    return _save(fig, Path(out_png))


def pick_profile_compression(compressions, wanted: float | None) -> float | None:
    """The configured compression closest (in log ratio) to ``wanted``; the middle one when none is asked for."""
    values = sorted({float(c) for c in compressions if float(c) > 1})
    if not values:
        return None
    if wanted is None:
        return values[len(values) // 2]
    return min(values, key=lambda c: abs(math.log(c) - math.log(wanted)))


def layer_density(layers: pd.DataFrame, runs: pd.DataFrame, out_png: Path, wanted: float | None = None) -> list[Path]:
    """Figure 3: each layer's kept fraction (solid) and effective fraction (dashed) at one compression."""
    plt = _plt()
    pruned = runs[runs["method_name"] != DENSE]
    chosen = pick_profile_compression(pruned["compression"], wanted)
    panels = _panels(pruned) or _panels(runs)
    palette = _palette(pruned)
    nlayers = int(layers["layer_index"].max()) + 1 if not layers.empty else 1
    fig, axes = _grid(plt, len(panels), width=max(4.4, 0.28 * nlayers + 1.5), height=3.8)
    for ax, (dataset, arch) in zip(axes, panels):
        sub = layers[(layers["dataset"] == dataset) & (layers["arch"] == arch)] if not layers.empty else layers
        if chosen is not None and not sub.empty:
            sub = sub[np.isclose(sub["compression"], chosen, rtol=1e-6)]
        here = pruned[(pruned["dataset"] == dataset) & (pruned["arch"] == arch)]
        title = _title(here, dataset, arch)
        if sub.empty:
            _empty(ax, "no mask statistics")
            ax.set_title(title)
            continue
        names = sub.drop_duplicates("layer_index").sort_values("layer_index")["layer"].tolist()
        positive = pd.concat([sub["density"], sub["effective_density"]])
        positive = positive[positive > 0]
        # A log axis cannot show 0: an effective density of 0 is drawn on a marked floor line below the
        # smallest non-zero density, with its own marker and legend entry.
        floor = float(positive.min()) / 4 if len(positive) else 1e-5
        zero_labelled = False
        for method, (display, style) in palette.items():
            msub = sub[sub["method"] == method]
            if msub.empty:
                continue
            mean = msub.groupby("layer_index")[["density", "effective_density"]].mean().reset_index()
            _line(ax, mean["layer_index"], mean["density"], {**style, "linestyle": "-"}, display)
            eff = mean["effective_density"].where(mean["effective_density"] > 0, floor)
            ax.plot(mean["layer_index"], eff, linestyle=":", linewidth=1.3, color=style["color"], alpha=0.9)
            zero = mean[mean["effective_density"] <= 0]
            if not zero.empty:
                ax.scatter(zero["layer_index"], np.full(len(zero), floor), marker="v", s=36, facecolors="none",
                           edgecolors=style["color"], linewidths=1.2, zorder=6,
                           label=None if zero_labelled else "effective density 0")
                zero_labelled = True
        ax.axhline(floor, color="0.6", linewidth=0.8, linestyle="-.")
        ax.plot([], [], linestyle=":", color="0.4", label="effective (dotted)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.removesuffix(".weight") for n in names], rotation=70, ha="right", fontsize=7.5)
        ax.set_title(f"{title} at {compression_text(chosen)} compression")
        ax.set_xlabel("prunable layer (input → output)")
        ax.set_ylabel("kept fraction of layer weights (log scale)")
        _legend(ax)
    return _save(fig, Path(out_png))


def collapse_fraction(runs: pd.DataFrame, out_png: Path) -> list[Path]:
    """Figure 4: percentage of seeds whose mask is collapsed, against nominal compression."""
    fig, panels = _pruned_panels(runs)
    for ax, _, series in panels:
        for method, ((display, style), msub) in series.items():
            frac = msub.groupby("compression")["collapsed"].mean().mul(100).reset_index()
            _line(ax, frac["compression"], frac["collapsed"], style, display)
        ax.set_xscale("log")
        ax.set_ylim(-5, 105)
        ax.set_xlabel("nominal compression ratio (×, log scale)")
        ax.set_ylabel("collapsed masks (% of seeds)")
        _legend(ax)
    return _save(fig, Path(out_png))


def accuracy_vs_sparsity(runs: pd.DataFrame, out_png: Path) -> list[Path]:
    """Figure 5: accuracy against sparsity in percent, ticks at FORCE's 90 .. 99.9 % (axis linear in log 1/(1-s))."""
    plt = _plt()
    pruned = runs[runs["method_name"] != DENSE]
    panels = _panels(runs)
    palette = _palette(pruned)
    fig, axes = _grid(plt, len(panels))
    ticks = [1.0 / (1.0 - s / 100.0) for s in FORCE_SPARSITIES]
    for ax, (dataset, arch) in zip(axes, panels):
        here = runs[(runs["dataset"] == dataset) & (runs["arch"] == arch)]
        sub = here[here["method_name"] != DENSE]
        labelled: set = set()
        for method, (display, style) in palette.items():
            msub = sub[sub["method"] == method]
            if msub.empty:
                continue
            _band(ax, _seed_stats(msub, "compression", "accuracy_pct"), style, display)
            _mark_diverged(ax, msub, "compression", labelled)
        dense = here[here["method_name"] == DENSE]["accuracy_pct"].dropna()
        if len(dense):
            ax.axhline(dense.mean(), color="0.3", linestyle="--", linewidth=1.2, label=f"dense ({dense.mean():.1f}%)")
        ax.set_xscale("log")
        lo = min([ticks[0]] + sub["compression"].tolist())
        hi = max([ticks[-1]] + sub["compression"].tolist())
        ax.set_xlim(lo / 1.25, hi * 1.25)
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{s:g}" for s in FORCE_SPARSITIES])
        ax.minorticks_off()
        ax.set_title(_title(here, dataset, arch))
        ax.set_xlabel("sparsity (% of weights pruned)")
        ax.set_ylabel(accuracy_label(runs))
        _legend(ax)
    return _save(fig, Path(out_png))


def draw_experiment(runs: pd.DataFrame, layers: pd.DataFrame, out_dir: str | Path,
                    profile_compression: float | None = None) -> list[Path]:
    """All figures of one experiment into ``out_dir/<figure>.{png,pdf}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if runs.empty:
        raise ValueError("no runs to draw")
    draw = {
        "accuracy_nominal": lambda out: accuracy_vs_compression(runs, out, "nominal"),
        "accuracy_effective": lambda out: accuracy_vs_compression(runs, out, "effective"),
        "effective_vs_nominal": lambda out: effective_vs_nominal(runs, out),
        "layer_density": lambda out: layer_density(layers, runs, out, profile_compression),
        "collapse": lambda out: collapse_fraction(runs, out),
        "accuracy_vs_sparsity": lambda out: accuracy_vs_sparsity(runs, out),
    }
    assert set(draw) == set(FIGURES), "every figure named in paibench.names.FIGURES is drawn here"
    written = []
    for name in FIGURES:
        written += draw[name](out_dir / f"{name}.png")
    return written
