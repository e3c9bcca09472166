"""Figures, tables and the `snakemake figures` target, on fixture results that mirror the real file schemas.

The fixture numbers are made up for these tests (written to tmp_path only); the files have the fields that
``paibench.training.train_run`` writes to metrics.json and ``paibench.pruning.stats`` to the mask JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import planned_jobs, planned_masks

from paibench.analysis import tables
from paibench.analysis.figures import pick_profile_compression
from paibench.analysis.results import budget, load_layers, load_runs
from paibench.config import Grid

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = {
    "datasets": {"digits": {}},
    "train": {"epochs": 3, "batch_size": 64, "optimizer": "sgd", "lr": 0.05},
    "experiments": {
        "mini": {"datasets": ["digits"], "archs": [{"name": "vgg16", "width": 0.25}],
                 "methods": ["dense", "random", "erk"], "compressions": [10, 100], "seeds": [0, 1],
                 "paper": ["mica", "force"]},
        "side": {"datasets": ["digits"], "archs": [{"name": "vgg16", "width": 0.25}],
                 "methods": ["random"], "compressions": [20], "seeds": [0], "paper": "rreg"},
    },
}
LAYERS = [("features.0.weight", [16, 1, 3, 3]), ("features.3.weight", [16, 16, 3, 3]), ("classifier.weight", [10, 16])]


def _write_run(root: Path, run, grid: Grid, diverged: bool = False) -> None:
    c = float(run.compression)
    numel = [int(pd.Series(s).prod()) for _, s in LAYERS]
    total = sum(numel)
    kept = max(1, round(total / c))
    collapsed = run.method.startswith("random") and c >= 100 and run.seed == 1
    eff_kept = 0 if collapsed else max(1, int(kept * (0.9 if run.method == "erk" else 0.6)))
    acc = None if diverged else max(0.1, 0.98 - 0.08 * (c ** 0.5 - 1) / 10 - (0.05 if run.method == "random" else 0))
    stats = {
        "total": total, "kept": kept, "nominal_compression": total / kept, "effective_kept": eff_kept,
        "effective_compression": total / eff_kept if eff_kept else None, "collapsed": collapsed,
        "layers": [{"name": n, "shape": s, "numel": k, "kept": round(k / c), "effective_kept": round(k / c * 0.6),
                    "density": 1 / c, "effective_density": 0.6 / c, "dead_inputs": 0, "dead_outputs": 0}
                   for (n, s), k in zip(LAYERS, numel)],
        "dataset": run.dataset, "method": run.method, "seed": run.seed, "target_compression": c,
    }
    mask_json = root / Path(run.mask).with_suffix(".json")
    mask_json.parent.mkdir(parents=True, exist_ok=True)
    mask_json.write_text(json.dumps(stats))
    out = root / run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "status": "diverged" if diverged else "ok", "epochs_run": 3, "final_test_acc": acc, "best_test_acc": acc,
        "best_epoch": 3, "accuracy": acc, "report": "final", "run_key": run.key, "dataset": run.dataset,
        "arch": "vgg16", "width": 0.25, "arch_options": {}, "method": run.method.split("_")[0],
        "method_options": {}, "compression": c, "seed": run.seed, "nominal_compression": total / kept,
        "effective_compression": stats["effective_compression"], "collapsed": collapsed, "parameters": total + 42,
        "prunable": total, "kept": kept, "mask_sha256": "0" * 64, "train": grid.train[run.experiment],
        "device": "cpu:x86_64 x1 threads", "wall_time_s": 1.5, "torch": "2.13.0+cpu", "python": "3.11.7",
        "host": "fixture", "command": "paibench train (fixture)",
    }
    (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "eval.json").write_text(json.dumps({"test_acc": acc, "status": metrics["status"], "pruned_nonzero": 0}))
    (out / "epochs.csv").write_text("epoch,test_acc\n1,0.5\n")


@pytest.fixture
def clone(tmp_path):
    """A 'fresh clone': the workflow and committed small results, without masks, weights or prepared data."""
    root = tmp_path / "clone"
    root.mkdir()
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    for d in ("workflow", "envs"):
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    grid = Grid(CONFIG, base_dir=root)
    for run in grid.runs:
        _write_run(root, run, grid, diverged=(run.method == "erk" and run.compression == "100" and run.seed == 0))
    # A checkout writes files in any order: make every metrics.json newer than its eval.json (by ageing eval.json:
    # a file dated in the future makes Snakemake stop a job that finishes before that time, as a clock skew).
    for metrics in root.glob("results/runs/**/metrics.json"):
        os.utime(metrics.with_name("eval.json"), (metrics.stat().st_mtime - 5,) * 2)
    return root


def _snakemake(root: Path, *args: str, check=True) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(BIN / "snakemake"), "--cores", "1", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _jobs(output: str) -> dict[str, int]:
    jobs = planned_jobs(subprocess.CompletedProcess([], 0, output, ""))
    jobs.pop("total", None)
    return jobs


# ------------------------------------------------------------------------------ workflow semantics
@pytest.mark.workflow  # one Snakemake dry run (~10 s)
def test_fresh_clone_figures_runs_no_mask_or_training_job(clone):
    out = _snakemake(clone, "-n", "figures")
    jobs = _jobs(out)
    assert set(jobs) <= {"figures", "experiment_figures", "paper_table", "aggregate", "plot"}, jobs
    assert jobs["experiment_figures"] == 2 and jobs["paper_table"] == 3
    # Each run's results are an input of the aggregate job only (figures and tables read its listing): every input
    # reference costs Snakemake a producer lookup, which dominated `snakemake -n` of large grids.
    runs = list(clone.glob("results/runs/**/metrics.json"))
    assert out.count("metrics.json") == len(runs) == 11 and "eval.json" not in out


@pytest.mark.workflow  # one Snakemake dry run (~10 s)
def test_missing_metrics_are_still_linked_to_training(clone):
    # Sanity check of the mechanism: a run without cached metrics is trained (its mask computed) as usual.
    victim = next(clone.glob("results/runs/mini/**/random/c10/s0/metrics.json"))
    victim.unlink()
    jobs = _jobs(_snakemake(clone, "-n", "figures"))
    assert jobs.get("train") == 1 and jobs.get("mask_batch") == 1, jobs
    assert planned_masks(clone, jobs) == 1


@pytest.mark.workflow
def test_figures_target_and_report_build_from_cache(clone):
    _snakemake(clone, "figures")
    for exp in ("mini", "side"):
        for name in ("accuracy_nominal", "accuracy_effective", "effective_vs_nominal", "layer_density",
                     "collapse", "accuracy_vs_sparsity"):
            for ext in ("png", "pdf"):
                assert (clone / f"results/figures/{exp}/{name}.{ext}").stat().st_size > 1000
    mica = (clone / "results/tables/mica.md").read_text()
    assert "diverged" in mica and "epochs: 3" in mica and "cpu:x86_64" in mica
    assert "side" not in json.loads((clone / "results/tables/force.json").read_text())["budget"].split("experiments:")[1]
    assert pd.read_csv(clone / "results/tables/force.csv").columns[0] == "experiments"  # plain CSV, no comment line
    assert "Nothing to be done" in _snakemake(clone, "-n", "figures")
    _snakemake(clone, "figures", "--report", "report.html")
    html = (clone / "report.html").read_text(errors="replace")
    assert len(html) > 10000 and "accuracy_nominal" in html


# --------------------------------------------------------------------------------- figures/tables
def _runs(clone):
    return load_runs(sorted(clone.glob("results/runs/**/metrics.json")))


def test_loaded_runs_mark_diverged_and_collapsed(clone):
    runs = _runs(clone)
    div = runs[runs["diverged"]]
    assert len(div) == 1 and div["accuracy_pct"].isna().all()
    col = runs[runs["collapsed"]]
    assert len(col) and (col["effective_compression"] == float("inf")).all()
    layers = load_layers(runs, clone / "results/masks")
    assert set(layers["layer"]) == {n for n, _ in LAYERS}


def test_tables_show_diverged_budget_and_force_columns(clone, tmp_path):
    runs = _runs(clone)
    written = tables.write_all(runs, tmp_path / "t", {"mica": ["mini"], "force": ["mini"], "rreg": ["mini", "side"]})
    assert len(written) == 12  # csv, json, md and tex for each of the three papers
    force = (tmp_path / "t/force.md").read_text()
    header = next(line for line in force.splitlines() if line.startswith("| dataset"))
    assert [c.strip() for c in header.strip("|").split("|")][4:] == ["90%", "95%", "98%", "99%", "99.5%", "99.9%"]
    assert "(1/2 div.)" in force  # erk at 100x: one of two seeds diverged
    assert "budget: epochs: 3" in force and "seeds: 2 (0, 1)" in force
    tex = (tmp_path / "t/force.tex").read_text()
    assert r"\begin{tabular}" in tex and r"99.9\%" in tex and "cpu:x86\\_64" in tex
    csv = pd.read_csv(tmp_path / "t/rreg.csv")
    erk10 = csv[(csv["method"] == "erk") & (csv["compression"] == 10)].iloc[0]
    rand10 = csv[(csv["method"] == "random") & (csv["compression"] == 10)].iloc[0]
    assert erk10["delta_vs_random_pct_points"] == pytest.approx(erk10["accuracy_mean_pct"] - rand10["accuracy_mean_pct"])


def test_budget_names_epochs_seeds_hardware(clone):
    text = budget(_runs(clone))
    assert "epochs: 3" in text and "seeds: 2" in text and "cpu:x86_64 x1 threads" in text and "1 diverged" in text


def test_profile_compression_is_closest_in_log_ratio():
    assert pick_profile_compression([10, 100, 1000], 250) == 100
    assert pick_profile_compression([10, 100, 1000], 400) == 1000
    assert pick_profile_compression([10, 30, 100], None) == 30
    assert pick_profile_compression([1], None) is None


def test_paper_key_is_validated():
    bad = yaml.safe_load(yaml.safe_dump(CONFIG))
    bad["experiments"]["mini"]["paper"] = "nature"
    with pytest.raises(Exception, match="nature"):
        Grid(bad)
    assert Grid(CONFIG).papers == {"mini": ["mica", "force"], "side": ["rreg"]}


# ------------------------------------------------------------------------- what the figures draw
def _drawn(monkeypatch, draw):
    """Run a figure function and return its matplotlib figure (instead of writing files)."""
    from paibench.analysis import figures

    figs = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: figs.append(fig) or [])
    draw()
    assert len(figs) == 1
    return figs[0]


def _styles(fig) -> dict:
    """legend label -> (colour, marker, linestyle) of every labelled line drawn."""
    from matplotlib.colors import to_hex

    out = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                out[line.get_label()] = (to_hex(line.get_color()), line.get_marker(), line.get_linestyle())
    return out


def test_each_method_keeps_one_style_and_display_name_across_figures_and_experiments(clone, monkeypatch):
    from paibench.analysis import figures

    runs = _runs(clone)
    mini = runs[runs["experiment"] == "mini"]
    side = runs[runs["experiment"] == "side"]  # random only: it must not take another colour here
    drawn = [_styles(_drawn(monkeypatch, lambda: figures.accuracy_vs_compression(mini, Path("x.png"), "nominal"))),
             _styles(_drawn(monkeypatch, lambda: figures.collapse_fraction(mini, Path("x.png")))),
             _styles(_drawn(monkeypatch, lambda: figures.accuracy_vs_compression(side, Path("x.png"), "effective")))]
    assert {"Random", "ERK"} <= set(drawn[0]) and "erk" not in drawn[0]  # display names, not config keys
    assert drawn[0]["Random"] == drawn[1]["Random"] == drawn[2]["Random"]
    assert drawn[0]["ERK"] == drawn[1]["ERK"] and drawn[0]["ERK"] != drawn[0]["Random"]
    dense = [label for label in drawn[0] if label.startswith("dense")]
    assert dense and float(dense[0].split("(")[1].rstrip("%)")) == pytest.approx(
        mini[mini["method_name"] == "dense"]["accuracy_pct"].mean(), abs=0.05)
    # the plotted points are the seed means of the data
    ax = _drawn(monkeypatch, lambda: figures.accuracy_vs_compression(mini, Path("x.png"), "nominal")).axes[0]
    erk = next(line for line in ax.get_lines() if line.get_label() == "ERK")
    expected = mini[(mini["method"] == "erk")].groupby("compression")["accuracy_pct"].mean().dropna()
    assert sorted(erk.get_ydata()) == pytest.approx(sorted(expected))


def test_mica_and_rpi_variants_are_named_and_styled_by_budget():
    from paibench.analysis.style import method_display, method_style

    assert method_display("mica_budget=erk", "mica", {"budget": "erk"}) == "MiCA (ERK budget)"
    assert method_display("rpi_budget=snip_effective", "rpi", {"budget": "snip"}) == "RPI (SNIP budget, effective)"
    assert method_display("my_label", "mica", {}) == "my_label"  # a label the user chose is kept
    mica_erk, mica_snip = method_style("mica_budget=erk", "mica", {"budget": "erk"}), method_style(
        "mica_budget=snip", "mica", {"budget": "snip"})
    assert mica_erk["color"] == mica_snip["color"] and mica_erk["marker"] != mica_snip["marker"]
    assert method_style("rpi_budget=erk", "rpi", {"budget": "erk"})["color"] != mica_erk["color"]


def test_zero_effective_density_is_drawn_and_marked(clone, monkeypatch):
    from paibench.analysis import figures

    runs = _runs(clone)
    runs = runs[(runs["experiment"] == "mini") & (runs["compression"] == 100)]
    layers = load_layers(runs, clone / "results/masks")
    layers.loc[(layers["method"] == "random") & (layers["layer_index"] == 1), "effective_density"] = 0.0
    fig = _drawn(monkeypatch, lambda: figures.layer_density(layers, runs, Path("x.png"), 100))
    ax = fig.axes[0]
    zero = [c for c in ax.collections if c.get_label() == "effective density 0"]
    assert len(zero) == 1
    (x, y), = zero[0].get_offsets()
    floor = float(layers.loc[layers["effective_density"] > 0, "effective_density"].min())
    floor = min(floor, float(layers["density"].min())) / 4
    assert x == 1 and y == pytest.approx(floor) and ax.get_ylim()[0] <= y
    assert "effective density 0" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_latex_tables_write_compressions_as_papers_do(clone, tmp_path):
    from paibench.analysis.style import compression_tex, compression_text

    assert compression_text(10 ** 4.7) == "10^4.7×" and compression_text(1995.3) == "10^3.3×"
    assert compression_text(2500) == "2,500×" and compression_text(10) == "10×"
    assert compression_tex(10 ** 4.7) == r"$10^{4.7}\times$" and compression_tex(2500) == r"$2{,}500\times$"
    tables.write_all(_runs(clone), tmp_path / "t", {"mica": ["mini"]})
    tex = (tmp_path / "t/mica.tex").read_text()
    assert r"$10\times$ & $100\times$" in tex and "×" not in tex
