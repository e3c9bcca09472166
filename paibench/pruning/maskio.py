"""Mask files: safetensors with one bool tensor per prunable parameter, plus a JSON of statistics.

File layout (``<name>.safetensors``):

* tensors: key = parameter name (``features.0.weight``), dtype ``bool``, shape = the weight's shape;
  ``True`` = kept. Only prunable parameters appear.
* ``__metadata__`` (all strings): ``format`` (``paibench-mask/1``), ``dataset``, ``arch``, ``arch_options``
  (JSON), ``width``, ``method``, ``options`` (JSON), ``compression``, ``seed``.

Statistics go to ``<name>.json`` beside it (see :func:`paibench.pruning.stats.mask_statistics`), including
the mask file's sha256. Writing is deterministic (no timestamps, sorted keys), so the same inputs give
byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from paibench.utils import atomic_path

FORMAT = "paibench-mask/1"


def stats_path(mask_path: str | Path) -> Path:
    return Path(mask_path).with_suffix(".json")


def save_mask(masks: dict[str, torch.Tensor], path: str | Path, metadata: dict) -> None:
    tensors = {name: m.detach().to("cpu", torch.bool).contiguous() for name, m in sorted(masks.items())}
    meta = {"format": FORMAT}
    for key, value in metadata.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=dict(sorted(meta.items())))


def load_mask(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        masks = {key: f.get_tensor(key) for key in f.keys()}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a paibench mask (format {meta.get('format')!r}, expected {FORMAT!r})")
    return masks, meta
