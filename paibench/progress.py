"""Live progress on a terminal, nothing in log files.

A bar (``\\r``-redrawn line with count, throughput and ETA) is drawn only when the stream is a terminal,
so Snakemake and SLURM logs hold the plain per-epoch lines that the callers print, never bar noise.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """One bar: ``update(n)`` adds n units (steps, bytes); ``close()`` erases the line.

    ``enabled=None``: draw only when `stream` is a terminal. ``per_step``: what one unit carries, for the
    throughput (e.g. images per step); ``unit``: ``"B"`` shows byte sizes.
    """

    WIDTH = 24

    def __init__(self, total: int | None, label: str = "", unit: str = "steps", per_step: float = 1.0,
                 rate_unit: str = "", stream: TextIO | None = None, enabled: bool | None = None,
                 min_interval: float = 0.2):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = bool(isatty()) if enabled is None else enabled
        self.total, self.label, self.unit = total, label, unit
        self.per_step, self.rate_unit = per_step, rate_unit
        self.done = 0
        self.start = self._last = time.perf_counter()
        self.min_interval = min_interval
        self._width = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last >= self.min_interval or (self.total and self.done >= self.total):
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-9, (now or time.perf_counter()) - self.start)
        rate = self.done / elapsed
        parts = [self.label] if self.label else []
        if self.unit == "B":
            count = f"{_size(self.done)}" + (f"/{_size(self.total)}" if self.total else "")
            speed = f"{_size(rate)}/s"
        else:
            count = f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"
            speed = f"{rate * self.per_step:,.0f} {self.rate_unit or self.unit}/s"
        if self.total:
            filled = int(self.WIDTH * min(1.0, self.done / self.total))
            parts.append("|" + "#" * filled + " " * (self.WIDTH - filled) + "|")
        parts += [count, speed]
        if self.total and rate > 0:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        return " ".join(parts)

    def _draw(self, now: float) -> None:
        text = self.line(now)
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
