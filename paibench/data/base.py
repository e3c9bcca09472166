"""Dataset specs and the prepared tensor file that every training and mask job reads.

A prepared file (``resources/data/<name>.pt``) is a ``torch.save`` of plain tensors, strings and lists,
loadable with ``weights_only=True``:

* image datasets: ``x_train``/``x_test`` uint8 N x C x H x W, ``y_train``/``y_test`` int64, ``mean``/``std``
  (per channel, 0..1 scale), ``augment`` ({"crop_padding": int, "flip": bool});
* graph datasets: ``x`` float32 N x F, ``y`` int64, ``edge_index`` int64 2 x E (both directions),
  ``train_mask``/``val_mask``/``test_mask`` bool;
* both: ``kind``, ``name``, ``num_classes``, ``classes`` and ``source`` (where the data came from).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from paibench.options import Option, parse_options
from paibench.utils import atomic_path


@dataclass(frozen=True)
class DatasetInfo:
    """What a model or a data-free pruning method needs to know: the shape, never the data."""

    name: str
    kind: str  # "image" or "graph"
    num_classes: int
    channels: int = 0
    size: tuple[int, int] = (0, 0)
    num_features: int = 0


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    prepare: Callable[[dict[str, Any], Path], dict]
    # Shape known without the data, from the options alone (None: depends on the files, e.g. imagefolder).
    info: Callable[[dict[str, Any]], DatasetInfo] | None = None
    options: Mapping[str, Option] = field(default_factory=dict)
    description: str = ""

    def parse_options(self, raw: Mapping[str, Any], field_name: str = "dataset") -> dict[str, Any]:
        return parse_options(self.options, raw, field_name)


def info_from_payload(payload: dict) -> DatasetInfo:
    if payload["kind"] == "image":
        _, c, h, w = payload["x_train"].shape
        return DatasetInfo(payload["name"], "image", int(payload["num_classes"]), channels=c, size=(h, w))
    return DatasetInfo(payload["name"], "graph", int(payload["num_classes"]), num_features=payload["x"].shape[1])


def save_prepared(payload: dict, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_prepared(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def image_payload(name, x_train, y_train, x_test, y_test, classes, source, augment) -> dict:
    """Assemble an image payload; mean/std come from the training split only."""
    x_train = torch.as_tensor(x_train, dtype=torch.uint8).contiguous()
    x_test = torch.as_tensor(x_test, dtype=torch.uint8).contiguous()
    scaled = x_train.double() / 255.0
    mean = scaled.mean(dim=(0, 2, 3)).float()
    std = scaled.std(dim=(0, 2, 3)).clamp_min(1e-3).float()
    return {
        "kind": "image",
        "name": name,
        "x_train": x_train,
        "y_train": torch.as_tensor(y_train, dtype=torch.int64),
        "x_test": x_test,
        "y_test": torch.as_tensor(y_test, dtype=torch.int64),
        "mean": mean,
        "std": std,
        "num_classes": len(classes),
        "classes": list(classes),
        "source": source,
        "augment": dict(augment),
    }
