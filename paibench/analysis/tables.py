"""The main table of each paper, as tidy CSV plus Markdown and LaTeX renderings, from cached results only.

* ``mica``:  accuracy per method at each compression, with the effective compression it really reached.
* ``force``: accuracy at 90 / 95 / 98 / 99 / 99.5 / 99.9 % sparsity.
* ``rreg``:  remaining parameters (%) and accuracy per architecture, with the difference to random pruning at
  the same compression and to random pruning at the same *effective* remaining parameters (interpolated on
  random's own curve in log remaining parameters; blank outside the range random was run on).

Which experiments feed which paper comes from the config (``experiments.<name>.paper``); an experiment
without the key appears in every table. Every table carries the budget (epochs, seeds, hardware) read from
the metrics files it was built from.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from paibench.analysis.results import budget
from paibench.analysis.style import compression_tex, compression_text
from paibench.names import DENSE, FORCE_SPARSITIES, PAPERS, RANDOM, TABLE_FORMATS
from paibench.utils import atomic_path

KEYS = ["dataset", "arch", "method"]


def seed_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std over seeds per (dataset, arch, method, compression); diverged seeds are counted, not averaged."""
    def gmean(s):
        s = s[np.isfinite(s) & (s > 0)]
        return float(np.exp(np.log(s).mean())) if len(s) else math.inf

    out = runs.groupby(KEYS + ["method_name", "compression"], sort=True).agg(
        accuracy_mean_pct=("accuracy_pct", "mean"), accuracy_std_pct=("accuracy_pct", "std"),
        nominal_compression=("nominal_compression", "mean"),
        effective_compression=("effective_compression", gmean),
        remaining_pct=("remaining_pct", "mean"), effective_remaining_pct=("effective_remaining_pct", "mean"),
        macs_kept=("macs_kept", "mean"), macs_effective=("macs_effective", "mean"),
        seeds=("seed", "count"), diverged=("diverged", "sum"), collapsed=("collapsed", "sum"),
        epochs=("epochs", lambda s: ",".join(str(int(v)) for v in sorted(s.dropna().unique()))),
        device=("device", lambda s: "; ".join(sorted(s.dropna().unique()))),
    ).reset_index()
    out["diverged"] = out["diverged"].astype(int)
    out["collapsed"] = out["collapsed"].astype(int)
    return out


def cell(row) -> str:
    """'93.12 ± 0.41', 'diverged' when every seed diverged, '(k/n div.)' when some did."""
    n, div = int(row["seeds"]), int(row["diverged"])
    if n == 0:
        return "–"
    if div == n or pd.isna(row["accuracy_mean_pct"]):
        return "diverged"
    text = f"{row['accuracy_mean_pct']:.2f}"
    if pd.notna(row["accuracy_std_pct"]):
        text += f" ± {row['accuracy_std_pct']:.2f}"
    if div:
        text += f" ({div}/{n} div.)"
    return text


def _ratio(value: float) -> str:
    return "∞ (collapsed)" if not math.isfinite(value) else compression_text(value)


# ------------------------------------------------------------------------------------------- tables
def mica_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    s = seed_summary(runs)
    tidy = s.copy()
    s["shown"] = [
        cell(r) + ("" if r["method_name"] == DENSE else f" ({_ratio(r['effective_compression'])})")
        for _, r in s.iterrows()
    ]
    s["column"] = [(DENSE if m == DENSE else compression_text(c)) for m, c in zip(s["method_name"], s["compression"])]
    order = [DENSE] + [compression_text(c) for c in sorted(s.loc[s["method_name"] != DENSE, "compression"].unique())]
    wide = s.pivot_table(index=KEYS, columns="column", values="shown", aggfunc="first").reindex(columns=order)
    wide = wide.dropna(axis=1, how="all").astype(object).fillna("–").reset_index()
    wide.columns.name = None
    return tidy, wide


def force_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    s = seed_summary(runs)
    s["sparsity_pct"] = 100.0 * (1.0 - 1.0 / s["compression"])
    dense = s[s["method_name"] == DENSE]
    pruned = s[s["method_name"] != DENSE].copy()
    # A compression belongs to a FORCE column when its sparsity matches to 4 significant digits.
    pruned["level"] = [next((lv for lv in FORCE_SPARSITIES if math.isclose(sp, lv, rel_tol=1e-4)), None)
                       for sp in pruned["sparsity_pct"]]
    pruned = pruned[pruned["level"].notna()]
    tidy = pd.concat([dense, pruned], ignore_index=True)
    pruned["column"] = [f"{lv:g}%" for lv in pruned["level"]]
    pruned["shown"] = [cell(r) for _, r in pruned.iterrows()]
    cols = [f"{lv:g}%" for lv in FORCE_SPARSITIES]
    if pruned.empty:
        wide = pd.DataFrame(columns=KEYS + cols)
    else:
        wide = pruned.pivot_table(index=KEYS, columns="column", values="shown", aggfunc="first")
        wide = wide.reindex(columns=cols).astype(object).fillna("–").reset_index()
        wide.columns.name = None
    # Dense is the 0 % reference of every row group: its own column, filled on the dense row only.
    wide.insert(3, "0% (dense)", "")
    for _, d in dense.iterrows():
        wide = pd.concat([wide, pd.DataFrame([{"dataset": d["dataset"], "arch": d["arch"], "method": d["method"],
                                               "0% (dense)": cell(d), **{c: "" for c in cols}}])],
                         ignore_index=True)
    wide = wide.sort_values(KEYS, key=lambda c: c.astype(str)).reset_index(drop=True)
    return tidy, wide


def _random_at(random: pd.DataFrame, effective_remaining: float) -> float:
    """Random pruning's accuracy at the given effective remaining parameters (log-linear interpolation)."""
    pts = random[np.isfinite(random["effective_remaining_pct"]) & (random["effective_remaining_pct"] > 0)
                 & random["accuracy_mean_pct"].notna()].sort_values("effective_remaining_pct")
    if len(pts) < 2 or not (effective_remaining > 0) or not math.isfinite(effective_remaining):
        return float("nan")
    x = np.log(pts["effective_remaining_pct"].to_numpy())
    t = math.log(effective_remaining)
    if t < x[0] - 1e-9 or t > x[-1] + 1e-9:
        return float("nan")
    return float(np.interp(t, x, pts["accuracy_mean_pct"].to_numpy()))


def rreg_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    s = seed_summary(runs)
    rows = []
    for (dataset, arch), g in s.groupby(["dataset", "arch"], sort=True):
        rand = g[g["method_name"] == RANDOM]
        # Prefer the plain 'random' label when several random variants were run.
        if RANDOM in set(rand["method"]):
            rand = rand[rand["method"] == RANDOM]
        elif len(rand):
            rand = rand[rand["method"] == sorted(rand["method"].unique())[0]]
        for _, r in g.iterrows():
            same_c = rand[np.isclose(rand["compression"], r["compression"], rtol=1e-6)]["accuracy_mean_pct"]
            delta = r["accuracy_mean_pct"] - same_c.iloc[0] if len(same_c) and r["method_name"] not in (RANDOM, DENSE) else float("nan")
            at_eff = _random_at(rand, r["effective_remaining_pct"]) if r["method_name"] not in (RANDOM, DENSE) else float("nan")
            rows.append({**r.to_dict(), "delta_vs_random_pct_points": delta, "delta_vs_random_same_effective_pct_points": r["accuracy_mean_pct"] - at_eff})
    tidy = pd.DataFrame(rows)
    if tidy.empty:
        return tidy, pd.DataFrame(columns=["dataset", "arch", "method", "remaining (%)"])

    def signed(v):
        return "" if pd.isna(v) else f"{v:+.2f}"

    wide = pd.DataFrame({
        "dataset": tidy["dataset"], "arch": tidy["arch"], "method": tidy["method"],
        "compression": [compression_text(c) for c in tidy["compression"]],
        "remaining (%)": [f"{v:.3g}" for v in tidy["remaining_pct"]],
        "effective remaining (%)": [f"{v:.3g}" if math.isfinite(v) else "0 (collapsed)" if v == 0 else "–"
                                    for v in tidy["effective_remaining_pct"].fillna(0.0)],
        "accuracy (%)": [cell(r) for _, r in tidy.iterrows()],
        "Δ random": [signed(v) for v in tidy["delta_vs_random_pct_points"]],
        "Δ random (same eff. params)": [signed(v) for v in tidy["delta_vs_random_same_effective_pct_points"]],
    })
    return tidy, wide


BUILDERS = {"mica": mica_table, "force": force_table, "rreg": rreg_table}


# ------------------------------------------------------------------------------------------ writers
def to_markdown(wide: pd.DataFrame, title: str, note: str) -> str:
    lines = [f"**{title}**", ""]
    if wide.empty:
        lines.append("_no runs_")
    else:
        lines.append("| " + " | ".join(map(str, wide.columns)) + " |")
        lines.append("|" + "---|" * len(wide.columns))
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in wide.itertuples(index=False)]
    return "\n".join(lines + ["", f"_{note}_", ""])


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "×": r"$\times$",
        "Δ": r"$\Delta$", "∞": r"$\infty$", "–": "--"}


def tex_escape(text) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


_COMPRESSION = re.compile(r"(10\^\d+(?:\.\d+)?×|\d{1,3}(?:,\d{3})*(?:\.\d+)?×)")


def tex_cell(text) -> str:
    """Escaped LaTeX, with every compression written as a paper writes it ($10^{4.7}\\times$, $1{,}995\\times$)."""
    out = []
    for i, piece in enumerate(_COMPRESSION.split(str(text))):
        if i % 2:
            number = piece[:-1]
            value = 10 ** float(number[3:]) if number.startswith("10^") else float(number.replace(",", ""))
            out.append(compression_tex(value))
        else:
            out.append(tex_escape(piece))
    return "".join(out)


def to_latex(wide: pd.DataFrame, title: str, note: str, label: str) -> str:
    cols = list(wide.columns) if not wide.empty else ["(no runs)"]
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{tex_escape(title)}. {tex_escape(note)}.}}", rf"\label{{tab:{label}}}",
             r"\begin{tabular}{" + "l" * min(3, len(cols)) + "r" * max(0, len(cols) - 3) + "}", r"\toprule",
             " & ".join(tex_cell(c) for c in cols) + r" \\", r"\midrule"]
    lines += [" & ".join(tex_cell(v) for v in row) + r" \\" for row in wide.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def write_paper_table(paper: str, runs: pd.DataFrame, out_dir: str | Path, experiments: list[str]) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sel = runs[runs["experiment"].isin(experiments)] if not runs.empty else runs
    if sel.empty:
        tidy, wide = pd.DataFrame(), pd.DataFrame()
    else:
        tidy, wide = BUILDERS[paper](sel)
        tidy.insert(0, "experiments", ",".join(sorted(sel["experiment"].unique())))
    note = budget(sel) + f"; experiments: {', '.join(experiments) or 'none'}"
    paths = {ext: out_dir / f"{paper}.{ext}" for ext in TABLE_FORMATS}
    with atomic_path(paths["csv"]) as tmp:  # plain CSV (pandas.read_csv reads it as is)
        Path(tmp).write_text(tidy.to_csv(index=False))
    with atomic_path(paths["json"]) as tmp:  # what the CSV's rows do not say: the title and the budget line
        Path(tmp).write_text(json.dumps({"paper": paper, "title": PAPERS[paper], "budget": note,
                                         "experiments": experiments, "table": paths["csv"].name}, indent=2) + "\n")
    with atomic_path(paths["md"]) as tmp:
        Path(tmp).write_text(to_markdown(wide, PAPERS[paper], note))
    with atomic_path(paths["tex"]) as tmp:
        Path(tmp).write_text(to_latex(wide, PAPERS[paper], note, paper))
    return list(paths.values())


def write_all(runs: pd.DataFrame, out_dir: str | Path, papers: dict[str, list[str]] | None = None) -> list[Path]:
    """The tables of the given papers (paper -> experiments); every paper from every experiment when None."""
    if papers is None:
        every = sorted(runs["experiment"].unique()) if not runs.empty else []
        papers = {paper: every for paper in PAPERS}
    written = []
    for paper, experiments in papers.items():
        written += write_paper_table(paper, runs, out_dir, experiments)
    return written
