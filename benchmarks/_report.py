"""What the benchmark scripts share: the CPU's name, a report's head (title, description, the command that
made it), a Markdown table of result rows, the printed report with its OUT.md and OUT.json."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor())


def cpu_environment(threads: int = 1) -> str:
    """'<CPU>, <n> torch thread(s), torch <version>, Python <version>.' for a report's description."""
    import torch

    return (f"{cpu_name()}, {threads} torch thread{'s' if threads != 1 else ''}, torch {torch.__version__}, "
            f"Python {platform.python_version()}.")


def report_head(title: str, description: str) -> list[str]:
    """A report's first lines: its title, its description and the command that made it (this script as run)."""
    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    return [f"# {title}", "", description, "", f"Command: `{command}`", ""]


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


def publish_report(out: str | None, title: str, description: str, rows: list[dict], notes: list[str] = (),
                   **payload) -> None:
    """The usual report: head, the rows as a table, then each note as a paragraph; OUT.json holds the rows,
    the CPU, torch's version and ``payload``."""
    import torch

    lines = [*report_head(title, description), *markdown_table(rows)]
    for note in notes:
        lines += ["", note]
    publish(out, lines, {"rows": rows, "cpu": cpu_name(), "torch": torch.__version__, **payload})
