"""Checks of command-line files before any work starts: one line naming the flag, the file and what was
expected, instead of a traceback halfway through a job, and never an output written over an input.

Every ``paibench`` subcommand passes each file it reads through :func:`input_file` and each file or folder
it writes through :func:`output_file` / :func:`output_dir`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from paibench.errors import PaibenchError

# What each kind of input is, in the words of the error message.
EXPECTED = {
    "mask": "a paibench mask file (.safetensors, written by `paibench mask`)",
    "stats": "a mask's statistics JSON (written beside the mask by `paibench mask`)",
    "data": "a prepared dataset file (written by `paibench prepare-data`)",
    "model": "trained weights (model.safetensors, written by `paibench train`)",
    "metrics": "a run's metrics.json (written by `paibench train`)",
    "json": "a JSON file",
    "list": "a text file with one path per line",
    "csv": "a CSV file (runs.csv, written by `paibench aggregate`)",
    "config": "a YAML config file",
}


def _fail(flag: str, path, problem: str, kind: str) -> PaibenchError:
    return PaibenchError(f"{flag}: {str(path)!r} {problem}; expected {EXPECTED.get(kind, kind)}")


def input_file(flag: str, path: str | os.PathLike, kind: str) -> Path:
    """`path` exists, is a readable non-empty file, and parses as `kind` (its header, not the whole file)."""
    p = Path(path)
    if not p.exists():
        raise _fail(flag, path, "does not exist", kind)
    if p.is_dir():
        raise _fail(flag, path, "is a folder", kind)
    if not os.access(p, os.R_OK):
        raise _fail(flag, path, "is not readable", kind)
    if p.stat().st_size == 0:
        raise _fail(flag, path, "is empty", kind)
    if kind in ("mask", "model"):
        _safetensors_header(flag, p, kind)
    elif kind in ("json", "metrics", "stats"):
        value = _json(flag, p, kind)
        if kind == "metrics" and not (isinstance(value, dict) and "run_key" in value and "accuracy" in value):
            raise _fail(flag, path, "is JSON but not a run's metrics", kind)
        if kind == "stats" and not (isinstance(value, dict) and "layers" in value and "total" in value):
            raise _fail(flag, path, "is JSON but not a mask's statistics", kind)
    elif kind in ("list", "csv", "config"):
        try:
            p.read_text()
        except UnicodeDecodeError:
            raise _fail(flag, path, "is not UTF-8 text", kind) from None
    elif kind == "data":
        _zip_or_pickle(flag, p, kind)
    return p


def read_json_input(flag: str, path, kind: str = "json"):
    return _json(flag, input_file(flag, path, kind), kind)


def _json(flag: str, p: Path, kind: str):
    try:
        return json.loads(p.read_text())
    except UnicodeDecodeError:
        raise _fail(flag, p, "is not UTF-8 text", kind) from None
    except json.JSONDecodeError as exc:
        raise _fail(flag, p, f"is not valid JSON (line {exc.lineno}: {exc.msg})", kind) from None


def _safetensors_header(flag: str, p: Path, kind: str) -> dict:
    """Parse the safetensors header (8-byte length + JSON) without reading the tensors."""
    with open(p, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        size = p.stat().st_size
        if n <= 1 or n > size - 8 or n > 100 << 20:
            raise _fail(flag, p, "is not a safetensors file (bad or truncated header)", kind)
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _fail(flag, p, "is not a safetensors file (its header is not JSON)", kind) from None
    if not isinstance(header, dict):
        raise _fail(flag, p, "is not a safetensors file", kind)
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
               and "data_offsets" in v), default=0)
    if 8 + n + end > size:
        raise _fail(flag, p, "is truncated (its tensors end past the end of the file)", kind)
    fmt = (header.get("__metadata__") or {}).get("format", "")
    if kind == "mask" and not str(fmt).startswith("paibench-mask/"):
        raise _fail(flag, p, "is a safetensors file but not a paibench mask", kind)
    if kind == "model" and str(fmt).startswith("paibench-mask/"):
        raise _fail(flag, p, "is a mask, not trained weights", kind)
    return header


def _zip_or_pickle(flag: str, p: Path, kind: str) -> None:
    """torch.save files are zip archives (legacy ones start with a pickle protocol byte)."""
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK" and magic[:1] != b"\x80":
        raise _fail(flag, p, "is not a torch.save file", kind)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == Path(b).resolve()
    except OSError:
        return False


def output_file(flag: str, path: str | os.PathLike, inputs: Iterable = (), suffix: str | None = None) -> Path:
    """`path` can be written: not a folder, not one of `inputs`, its folder creatable and writable."""
    p = Path(path)
    if suffix and p.suffix != suffix:
        raise PaibenchError(f"{flag}: {str(path)!r} is not allowed; expected a file name ending in {suffix}")
    if p.is_dir():
        raise PaibenchError(f"{flag}: {str(path)!r} is a folder; expected a file path to write")
    for src in inputs:
        if src and _same(p, Path(src)):
            raise PaibenchError(f"{flag}: {str(path)!r} is also an input of this command; expected a different "
                                f"output path (the input would be overwritten)")
    _writable_folder(flag, p.parent)
    return p


def output_dir(flag: str, path: str | os.PathLike, inputs: Iterable = ()) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PaibenchError(f"{flag}: {str(path)!r} is a file; expected a folder to write into")
    for src in inputs:
        if src and _same(p, Path(src)):
            raise PaibenchError(f"{flag}: {str(path)!r} is also an input of this command; expected another folder")
    _writable_folder(flag, p)
    return p


def _writable_folder(flag: str, folder: Path) -> None:
    """The folder exists and is writable, or can be created (no ancestor is a regular file)."""
    probe = folder if str(folder) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PaibenchError(f"{flag}: {str(folder)!r} lies under the file {str(probe)!r}; expected a folder path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PaibenchError(f"{flag}: {str(probe)!r} is not writable; expected a folder you can write to")
