"""Checksummed downloads: a partial or corrupt file is never taken as done; it is removed and fetched again."""

from __future__ import annotations

import logging
import os
import urllib.request
from pathlib import Path

from paibench.utils import file_digest

log = logging.getLogger(__name__)


class ChecksumError(RuntimeError):
    pass


def _copy_with_progress(response, out, name: str) -> None:
    """Stream the body to `out`; a bar with size, speed and ETA on a terminal (Content-Length when sent)."""
    from paibench.progress import Progress

    length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
    bar = Progress(int(length) if length and length.isdigit() else None, label=f"download {name}", unit="B")
    try:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            out.write(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()


def fetch(url: str, dest: Path, digest: str, algorithm: str = "md5", retries: int = 3, timeout: float = 60) -> Path:
    """Download `url` to `dest` unless a file with the right checksum is already there.

    The body streams into ``dest.part`` and is renamed only after its checksum matches, so a killed
    download leaves no file under the final name; an existing file with a wrong checksum is deleted.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if file_digest(dest, algorithm) == digest:
            return dest
        log.warning("%s has a wrong %s checksum; removing it and downloading again", dest, algorithm)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
                _copy_with_progress(response, out, dest.name)
            got = file_digest(part, algorithm)
            if got != digest:
                raise ChecksumError(f"{url}: {algorithm} {got} != expected {digest}")
            os.replace(part, dest)
            return dest
        except Exception as exc:  # network errors and checksum mismatches are both retried
            last_error = exc
            part.unlink(missing_ok=True)
            log.warning("download attempt %d/%d of %s failed: %s", attempt, retries, url, exc)
    from paibench.errors import PaibenchError

    # A user-facing outcome, not a bug: one line (the CLI prints PaibenchError without a traceback).
    raise PaibenchError(
        f"download: could not fetch {url} after {retries} attempts ({str(last_error).splitlines()[0]}); expected "
        f"internet access, or the file placed at {dest} (with {algorithm} {digest}), or an offline dataset such as 'digits'"
    )
