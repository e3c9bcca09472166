"""What the benchmark scripts share: the CPU's name, a Markdown table of result rows, the printed report
with its OUT.md and OUT.json."""

from __future__ import annotations

import json
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor())


def markdown_table(rows: list[dict], cols: list[str] | None = None) -> list[str]:
    cols = cols or list(rows[0])
    return (["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])


def publish(out: str | None, lines: list[str], payload: dict) -> None:
    """Print the report's lines; with OUT also write them to OUT.md and the numbers (payload) to OUT.json."""
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        Path(out).with_suffix(".md").write_text(text + "\n")
