"""A seeded stochastic-block-model node-classification graph with class-dependent features (offline graph default).

Features alone are deliberately noisy so that a model that uses the edges does better than one that does not.
"""

from __future__ import annotations

import numpy as np

from paibench.lazy import torch  # imported when first used (no torch to read a config)
from paibench.data.base import DatasetInfo, DatasetSpec
from paibench.options import Option


def prepare(options, raw_root):
    rng = np.random.default_rng(options["seed"])
    n, k, f = options["nodes"], options["classes"], options["features"]
    y = np.sort(np.arange(n) % k)
    same = y[:, None] == y[None, :]
    prob = np.where(same, options["p_in"], options["p_out"])
    upper = np.triu(rng.random((n, n)) < prob, 1)
    src, dst = np.nonzero(upper)
    edge_index = np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1)
    centers = rng.normal(0.0, 1.0, (k, f))
    x = centers[y] * options["signal"] + rng.normal(0.0, 1.0, (n, f))
    order = rng.permutation(n)
    n_train, n_val = int(0.5 * n), int(0.2 * n)
    masks = {name: np.zeros(n, dtype=bool) for name in ("train_mask", "val_mask", "test_mask")}
    masks["train_mask"][order[:n_train]] = True
    masks["val_mask"][order[n_train : n_train + n_val]] = True
    masks["test_mask"][order[n_train + n_val :]] = True
    return {
        "kind": "graph",
        "name": "sbm",
        "x": torch.tensor(x, dtype=torch.float32),
        "y": torch.tensor(y, dtype=torch.int64),
        "edge_index": torch.tensor(edge_index, dtype=torch.int64),
        **{key: torch.tensor(value) for key, value in masks.items()},
        "num_classes": k,
        "classes": [str(i) for i in range(k)],
        "source": f"synthetic SBM {dict(options)}",
    }


SPEC = DatasetSpec(
    name="sbm",
    kind="graph",
    prepare=prepare,
    info=lambda options: DatasetInfo("sbm", "graph", options["classes"], num_features=options["features"]),
    options={
        "nodes": Option(int, 600, minimum=20),
        "classes": Option(int, 4, minimum=2),
        "features": Option(int, 32, minimum=1),
        "p_in": Option(float, 0.05, minimum=0.0, maximum=1.0),
        "p_out": Option(float, 0.005, minimum=0.0, maximum=1.0),
        "signal": Option(float, 0.35, minimum=0.0, help="scale of the class centres relative to unit noise"),
        "seed": Option(int, 0, minimum=0),
    },
    description="seeded stochastic block model, 50/20/30 train/val/test split",
)
