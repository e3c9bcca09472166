"""Mask files: safetensors with one bool tensor per prunable parameter, plus a JSON of statistics.

File layout (``<name>.safetensors``):

* tensors: key = parameter name (``features.0.weight``), dtype ``bool``, shape = the weight's shape;
  ``True`` = kept. Only prunable parameters appear.
* ``__metadata__`` (all strings): ``format`` (``paibench-mask/1``), ``dataset``, ``arch``, ``arch_options``
  (JSON), ``width``, ``method``, ``options`` (JSON), ``compression``, ``seed``, and ``content_sha256``: the
  sha256 of the tensors (names, shapes and bits, in name order), so a mask is verifiable on its own and
  checked whenever it is read (masks written before it existed are checked against their ``.json``).

Statistics go to ``<name>.json`` beside it (see :func:`paibench.pruning.stats.mask_statistics`), including
the mask file's sha256. Writing is deterministic (no timestamps, sorted keys), so the same inputs give
byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
from safetensors import safe_open

from paibench.utils import atomic_path

FORMAT = "paibench-mask/1"


def stats_path(mask_path: str | Path) -> Path:
    from paibench import paths

    return paths.mask_stats(mask_path)


def check_fits(masks, params, where: str) -> None:
    """Refuse masks whose parameter names or shapes differ from a model's prunable weights (one line)."""
    from paibench.errors import PaibenchError

    if set(masks) != set(params):
        missing, extra = sorted(set(params) - set(masks)), sorted(set(masks) - set(params))
        raise PaibenchError(f"{where}: parameter names do not match the architecture (missing {missing[:3]}, "
                            f"unexpected {extra[:3]}); expected a mask made for this architecture")
    for name, p in params.items():
        if tuple(masks[name].shape) != tuple(p.shape):
            raise PaibenchError(f"{where}: {name} has shape {tuple(masks[name].shape)}, the architecture's weight "
                                f"has {tuple(p.shape)}; expected a mask made for this width")


def content_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, shape and bits, in name order (independent of the file's header)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.bool).contiguous()
        h.update(json.dumps([name, list(t.shape)]).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_mask(masks: dict[str, torch.Tensor], path: str | Path, metadata: dict) -> None:
    tensors = {name: m.detach().to("cpu", torch.bool).contiguous() for name, m in sorted(masks.items())}
    meta = {"format": FORMAT, "content_sha256": content_sha256(tensors)}
    for key, value in metadata.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(serialize_bool_safetensors(tensors, meta))


def serialize_bool_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors layout written byte-for-byte deterministically.

    The safetensors library serialises ``__metadata__`` from a hash map whose order changes between
    processes, which would break byte-identical masks, so the header is built here with sorted keys.
    Layout: 8-byte little-endian header length, JSON header (space-padded to 8 bytes), then the raw data.
    """
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    chunks, offset = [], 0
    for name in sorted(tensors):
        data = tensors[name].numpy().astype("bool").tobytes()
        header[name] = {"dtype": "BOOL", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def load_mask(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The masks and metadata of a mask file; a mask whose tensors do not match its ``content_sha256`` is
    refused (one flipped byte), whatever its ``.json`` says."""
    from paibench.errors import PaibenchError

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            masks = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise PaibenchError(f"mask {str(path)!r}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise PaibenchError(f"mask {str(path)!r}: not a paibench mask (format {meta.get('format')!r}, expected {FORMAT!r})")
    recorded = meta.get("content_sha256")
    if recorded and recorded != content_sha256(masks):
        raise PaibenchError(f"mask {str(path)!r}: its tensors do not match the content_sha256 in its header; the file "
                            f"is corrupt or was edited (delete it and rerun to recompute it)")
    return masks, meta
