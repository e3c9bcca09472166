"""CIFAR-10/100 from the official python archives (checksummed download, no torchvision needed)."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from paibench.data.base import DatasetInfo, DatasetSpec, image_payload
from paibench.data.download import fetch

ARCHIVES = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", b"label_names"),
        "label_key": b"labels",
        "classes": 10,
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", b"fine_label_names"),
        "label_key": b"fine_labels",
        "classes": 100,
    },
}


def _read_batches(archive: tarfile.TarFile, folder: str, names, label_key):
    images, labels = [], []
    for name in names:
        # The official CIFAR archives are python pickles of numpy arrays; this is their only format.
        entry = pickle.load(archive.extractfile(f"{folder}/{name}"), encoding="bytes")
        images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry[label_key])
    return np.concatenate(images), np.asarray(labels, dtype=np.int64)


def _make_prepare(name: str):
    meta = ARCHIVES[name]

    def prepare(options, raw_root: Path):
        path = fetch(meta["url"], Path(raw_root) / Path(meta["url"]).name, meta["md5"], "md5")
        with tarfile.open(path, "r:gz") as archive:
            x_train, y_train = _read_batches(archive, meta["folder"], meta["train"], meta["label_key"])
            x_test, y_test = _read_batches(archive, meta["folder"], meta["test"], meta["label_key"])
            meta_file, meta_key = meta["meta"]
            classes = [c.decode() for c in pickle.load(archive.extractfile(f"{meta['folder']}/{meta_file}"), encoding="bytes")[meta_key]]
        return image_payload(name, x_train, y_train, x_test, y_test, classes, source=meta["url"],
                             augment={"crop_padding": 4, "flip": True})

    return prepare


def _spec(name: str) -> DatasetSpec:
    classes = ARCHIVES[name]["classes"]
    return DatasetSpec(
        name=name,
        kind="image",
        prepare=_make_prepare(name),
        info=lambda options: DatasetInfo(name, "image", classes, channels=3, size=(32, 32)),
        train_examples=lambda options: 50_000,
        options={},
        description=f"CIFAR-{classes} official archive ({ARCHIVES[name]['url']}, md5-checked)",
    )


CIFAR10 = _spec("cifar10")
CIFAR100 = _spec("cifar100")
