"""Names that several parts of paibench (config, workflow rules, analysis, tests) must agree on: one home.

Torch-free and pandas-free: the workflow reads these while parsing.
"""

from __future__ import annotations

# The method that prunes nothing: compression 1, one run per (dataset, arch, seed), the reference line of
# every figure and the 0 % column of FORCE's table.
DENSE = "dense"
# The baseline RReg's table measures every method against (Δ random).
RANDOM = "random"

# The figures of every experiment (results/figures/<experiment>/<name>.{png,pdf}), in drawing order:
# name -> (title, report subcategory; the report groups figures by experiment, then by this).
FIGURES = {
    "accuracy_nominal": ("accuracy vs nominal compression", "accuracy vs compression"),
    "accuracy_effective": ("accuracy vs effective compression", "accuracy vs compression"),
    "effective_vs_nominal": ("effective vs nominal compression", "effective compression"),
    "layer_density": ("per-layer density profile", "per-layer density"),
    "collapse": ("layer collapse", "layer collapse"),
    "accuracy_vs_sparsity": ("accuracy vs sparsity (FORCE view)", "accuracy vs sparsity (FORCE)"),
}

# The papers whose main tables paibench rebuilds (results/tables/<paper>.{csv,json,md,tex}): name -> title.
PAPERS = {
    "mica": "MiCA (TMLR 2024): accuracy (%) at each nominal compression; effective compression in parentheses",
    "force": "FORCE (ICLR 2021): accuracy (%) at each sparsity",
    "rreg": "RReg (CVPR-W 2023): remaining parameters and accuracy (%); Δ against random pruning",
}
TABLE_FORMATS = ("csv", "json", "md", "tex")

# Multiply-accumulates per example a mask's statistics record (pruning.stats), per layer and in total, and
# metrics.json, runs.csv and `paibench inspect` repeat: dense, kept, effectively kept (both definitions).
MAC_KEYS = ("macs", "macs_kept", "macs_effective", "macs_effective_mica")

# FORCE's sparsity levels (%): its table's columns and the ticks of the accuracy-vs-sparsity figure.
FORCE_SPARSITIES = (90.0, 95.0, 98.0, 99.0, 99.5, 99.9)

# How a pack trains its runs (config `pack_mode`, `paibench train-pack --mode`): loop interleaves them (on the CPU
# bitwise the runs trained alone), vmap trains them as one vectorised model (same learning up to float summation
# order), auto: vmap on CUDA, loop elsewhere.
PACK_MODES = ("auto", "loop", "vmap")
DEFAULT_PACK_MODE = "auto"
