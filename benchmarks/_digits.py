"""The default config's digits experiment as the CPU benchmarks train it: its recipe and its prepared data."""

from __future__ import annotations

from pathlib import Path

import yaml

from paibench.data import DATASETS, save_prepared

REPO = Path(__file__).resolve().parents[1]


def _default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def digits_experiment() -> dict:
    """The `digits` experiment of config/config.yaml (archs, methods, compressions, seeds, its train overrides)."""
    return _default_config()["experiments"]["digits"]


def digits_recipe(epochs: int = 0) -> dict:
    """That experiment's training recipe on the CPU (the top-level train section and its overrides); ``epochs``
    replaces its epochs unless 0."""
    config = _default_config()
    recipe = {**config["train"], **config["experiments"]["digits"].get("train", {}), "device": "cpu"}
    return {**recipe, "epochs": epochs} if epochs else recipe


def prepare_digits(work: Path) -> tuple[Path, dict]:
    """Prepare the digits dataset into ``work/digits.pt``: its path and the payload."""
    spec = DATASETS.get("digits")
    payload = spec.prepare(spec.parse_options({}), work / "raw")
    save_prepared(payload, work / "digits.pt")
    return work / "digits.pt", payload
