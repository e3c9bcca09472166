"""What an architecture is, as the registry and a config see it (no torch: reading a config stays light)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from paibench.options import Option, parse_options


@dataclass(frozen=True)
class ArchSpec:
    name: str
    kind: str  # "image" or "graph": the dataset kind it runs on (paibench.tasks)
    build: Callable[..., Any]  # build(info: DatasetInfo, width: float, **options) -> nn.Module (often a lazy Ref)
    options: Mapping[str, Option] = field(default_factory=dict)
    description: str = ""

    def parse_options(self, raw: Mapping[str, Any], field_name: str = "arch") -> dict[str, Any]:
        return parse_options(self.options, raw, field_name)
