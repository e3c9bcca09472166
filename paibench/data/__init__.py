"""Dataset registry: adding a dataset is one module with a ``DatasetSpec`` plus one line below."""

from __future__ import annotations

from paibench.data import cifar, digits, imagefolder, ogbn_arxiv, planetoid, sbm, tinyimagenet
from paibench.data.base import DatasetInfo, DatasetSpec, info_from_payload, load_prepared, save_prepared
from paibench.registry import Registry

DATASETS: Registry[DatasetSpec] = Registry("dataset", group="paibench.datasets", item_type=DatasetSpec)
DATASETS.add("digits", digits.SPEC)
DATASETS.add("sbm", sbm.SPEC)
DATASETS.add("cifar10", cifar.CIFAR10)
DATASETS.add("cifar100", cifar.CIFAR100)
DATASETS.add("imagefolder", imagefolder.SPEC)
DATASETS.add("cora", planetoid.CORA)
DATASETS.add("citeseer", planetoid.CITESEER)
DATASETS.add("tinyimagenet", tinyimagenet.SPEC)
DATASETS.add("ogbn-arxiv", ogbn_arxiv.SPEC)

__all__ = ["DATASETS", "DatasetInfo", "DatasetSpec", "info_from_payload", "load_prepared", "save_prepared"]
