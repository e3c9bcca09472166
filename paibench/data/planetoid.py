"""Cora and CiteSeer through PyG's Planetoid reader, with the standard public split.

``root`` is a folder holding ``<Name>/raw/ind.<name>.*`` (e.g. ``../shared/data/planetoid``). The raw
files are copied into ``resources/`` first, because Planetoid writes its processed files next to them
and the given root may be read-only. Without raw files PyG downloads them (needs internet).
"""

from __future__ import annotations

import shutil
from pathlib import Path


from paibench.data.base import DatasetInfo, DatasetSpec
from paibench.data.base import local_path
from paibench.errors import PaibenchError
from paibench.options import Option

NAMES = {"cora": ("Cora", 1433, 7), "citeseer": ("CiteSeer", 3703, 6)}


def _make_prepare(key: str):
    pyg_name = NAMES[key][0]

    def prepare(options, raw_root: Path):
        from torch_geometric.datasets import Planetoid

        work = Path(raw_root) / "planetoid"
        if options["root"]:
            source = Path(options["root"]).expanduser() / pyg_name / "raw"
            if not source.is_dir():
                raise PaibenchError(f"dataset.root: {str(source.parent.parent)!r} has no {pyg_name}/raw folder")
            target = work / pyg_name / "raw"
            target.mkdir(parents=True, exist_ok=True)
            for f in source.iterdir():
                if not (target / f.name).exists():
                    shutil.copy2(f, target / f.name)
        data = Planetoid(str(work), pyg_name, split="public")[0]
        return {
            "kind": "graph",
            "name": key,
            "x": data.x.float().contiguous(),
            "y": data.y.long().contiguous(),
            "edge_index": data.edge_index.long().contiguous(),
            "train_mask": data.train_mask.bool(),
            "val_mask": data.val_mask.bool(),
            "test_mask": data.test_mask.bool(),
            "num_classes": int(data.y.max()) + 1,
            "classes": [str(i) for i in range(int(data.y.max()) + 1)],
            "source": f"Planetoid {pyg_name} (public split) from {options['root'] or 'PyG download'}",
        }

    return prepare


def _check_files(pyg_name: str):
    def check(options, base_dir: Path):
        if not options.get("root"):
            return None  # downloads (needs internet)
        root = local_path(options["root"], base_dir)
        expected = f"a folder holding {pyg_name}/raw with the Planetoid files (ind.{pyg_name.lower()}.x, ...)"
        if not root.is_dir():
            return ("root", "is not a folder" if root.exists() else "does not exist", expected)
        if not (root / pyg_name / "raw").is_dir():
            return ("root", f"has no {pyg_name}/raw folder", expected)
        return None
    return check


def _spec(key: str) -> DatasetSpec:
    pyg_name, features, classes = NAMES[key]
    return DatasetSpec(
        name=key,
        kind="graph",
        prepare=_make_prepare(key),
        info=lambda options: DatasetInfo(key, "graph", classes, num_features=features),
        options={"root": Option(str, "", help="folder with <Name>/raw Planetoid files; empty: download")},
        check_files=_check_files(pyg_name),
        description=f"{pyg_name} citation graph, Planetoid public split (20 labels per class)",
    )


CORA = _spec("cora")
CITESEER = _spec("citeseer")
