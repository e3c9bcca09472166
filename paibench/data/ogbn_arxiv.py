"""ogbn-arxiv through ``ogb`` (``NodePropPredDataset``), with the official time split and evaluator.

169,343 papers, 128 word2vec features, 40 subject classes; train = papers up to 2017, valid = 2018,
test = 2019 (``get_idx_split``). The citation graph is directed; it is made symmetric (both directions,
duplicates removed) as the OGB baselines do (``to_undirected`` / ``adj_t.to_symmetric()``). The payload
records ``"evaluator": "ogbn-arxiv"``, so training scores accuracy with ``ogb.nodeproppred.Evaluator``.

``ogb`` caches its processed graph as a torch pickle of numpy arrays written with pickle protocol 4.
torch >= 2.6 loads with ``weights_only=True`` by default, and its restricted unpickler rejects that file
outright (opcode 149, FRAME) -- ``torch.serialization.add_safe_globals`` for the numpy types does not help
(checked with torch 2.13). Rather than unpickling with ``weights_only=False``, the cache is removed before
each load so ogb re-reads the raw CSVs (a few seconds for arxiv; this runs once per prepared payload).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from paibench.lazy import torch  # imported when first used (no torch to read a config)
from paibench.data.base import DatasetInfo, DatasetSpec
from paibench.errors import PaibenchError
from paibench.options import Option

NAME = "ogbn-arxiv"
DIR = "ogbn_arxiv"


def symmetric_edges(edge_index: np.ndarray, num_nodes: int) -> torch.Tensor:
    """Both directions of every edge, self-loops and duplicates removed, sorted (row-major)."""
    ei = torch.as_tensor(np.asarray(edge_index), dtype=torch.int64)
    both = torch.cat([ei, ei.flip(0)], dim=1)
    both = both[:, both[0] != both[1]]
    keys = torch.unique(both[0] * num_nodes + both[1])
    return torch.stack([keys // num_nodes, keys % num_nodes])


def load(root: Path) -> dict:
    from ogb.nodeproppred import NodePropPredDataset

    root = Path(root)
    if (root / DIR).is_dir():  # ogb saves into processed/ without creating it
        (root / DIR / "processed").mkdir(exist_ok=True)
        (root / DIR / "processed" / "data_processed").unlink(missing_ok=True)  # see the module docstring
    dataset = NodePropPredDataset(NAME, root=str(root))
    split = dataset.get_idx_split()
    graph, labels = dataset[0]
    n = int(graph["num_nodes"])
    masks = {}
    for ours, theirs in (("train", "train"), ("val", "valid"), ("test", "test")):
        m = torch.zeros(n, dtype=torch.bool)
        m[torch.as_tensor(np.array(split[theirs]), dtype=torch.int64)] = True
        masks[f"{ours}_mask"] = m
    y = torch.as_tensor(np.array(labels), dtype=torch.int64).view(-1)
    classes = int(y.max()) + 1
    return {
        "kind": "graph",
        "name": "ogbn-arxiv",
        "x": torch.as_tensor(np.array(graph["node_feat"]), dtype=torch.float32).contiguous(),
        "y": y,
        "edge_index": symmetric_edges(graph["edge_index"], n),
        **masks,
        "num_classes": classes,
        "classes": [str(i) for i in range(classes)],
        "evaluator": NAME,
        "source": f"ogb NodePropPredDataset('{NAME}'), official time split, edges symmetrised",
    }


def prepare(options, raw_root: Path):
    work = Path(raw_root) / "ogb"
    if options["root"]:
        # Copy the given (possibly read-only) ogbn_arxiv folder: ogb writes processed files next to raw ones.
        source = Path(options["root"]).expanduser() / DIR
        if not (source / "raw").is_dir():
            raise PaibenchError(f"dataset.root: {options['root']!r} has no {DIR}/raw folder")
        if not (source / "RELEASE_v1.txt").is_file():
            # Without it ogb asks on stdin whether to re-download, which would hang a pipeline job.
            raise PaibenchError(f"dataset.root: {str(source)!r} has no RELEASE_v1.txt; expected the unpacked "
                                f"official arxiv.zip (version 1)")
        target = work / DIR
        if not target.exists():
            shutil.copytree(source, target)
    return load(work)


SPEC = DatasetSpec(
    name="ogbn-arxiv",
    kind="graph",
    prepare=prepare,
    info=lambda options: DatasetInfo("ogbn-arxiv", "graph", 40, num_features=128),
    options={"root": Option(str, "", help="folder holding ogbn_arxiv/raw (and split/); empty: ogb downloads it")},
    description="OGB ogbn-arxiv (169k nodes, 40 classes), official time split, symmetrised, OGB Evaluator",
)
