"""Dataset specs and the prepared tensor file that every training and mask job reads.

A prepared file (``resources/data/<name>.pt``) is a ``torch.save`` of plain tensors, strings and lists,
loadable with ``weights_only=True``:

* image datasets: ``x_train``/``x_test`` uint8 N x C x H x W, ``y_train``/``y_test`` int64, ``mean``/``std``
  (per channel, 0..1 scale), ``augment`` ({"crop_padding": int, "flip": bool}, and ``random_crop``: int
  when the model sees random windows of that size, train and test, e.g. the RReg reference's
  Tiny-ImageNet ``RandomCrop(32)``);
* graph datasets: ``x`` float32 N x F, ``y`` int64, ``edge_index`` int64 2 x E (both directions),
  ``train_mask``/``val_mask``/``test_mask`` bool;
* both: ``kind``, ``name``, ``num_classes``, ``classes`` and ``source`` (where the data came from).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


from paibench.lazy import torch  # imported when first used (no torch to read a config)
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
    # Checks the local files the options name (their structure, not just that they exist), before any
    # job: check(options, base_dir) returns None or (option key, what is wrong, what is expected).
    check_files: Callable[[dict[str, Any], Path], tuple[str, str, str] | None] | None = None
    # Training examples per epoch from the options alone (None: known only after preparing), for estimates.
    train_examples: Callable[[dict[str, Any]], int | None] | None = None

    def parse_options(self, raw: Mapping[str, Any], field_name: str = "dataset") -> dict[str, Any]:
        return parse_options(self.options, raw, field_name)

    def check(self, options: dict[str, Any], base_dir: Path, field_name: str) -> None:
        """One clear error when a path option does not hold what preparing the data will read."""
        problem = self.check_files(options, Path(base_dir)) if self.check_files else None
        if problem:
            key, what, expected = problem
            from paibench.errors import PaibenchError

            raise PaibenchError(f"{field_name}.{key}: {options[key]!r} {what}; expected {expected}")


def local_path(text: str, base_dir: Path) -> Path:
    """A path option resolved against the workflow's working directory."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def info_from_payload(payload: dict) -> DatasetInfo:
    if payload["kind"] == "image":
        _, c, h, w = payload["x_train"].shape
        crop = input_crop(payload)
        size = (crop, crop) if crop else (h, w)
        return DatasetInfo(payload["name"], "image", int(payload["num_classes"]), channels=c, size=size)
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


def _random_crops(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A `size` x `size` window at a uniform random offset, one draw per image (gathered, no loop)."""
    b, c, h, w = x.shape
    dy = torch.randint(0, h - size + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, w - size + 1, (b,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(size, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(size, device=x.device))[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return x[bi, ci, rows, cols]


def augment_images(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator, crop: int = 0) -> torch.Tensor:
    """Random crop with `pad` zero padding, then (``crop`` > 0) a random ``crop`` x ``crop`` window
    (torchvision ``RandomCrop(crop)``), then a random horizontal flip; one draw per image, no host sync.

    The training engine and the pruning batches share this, so both see the same augmentation.
    """
    h = x.shape[2]
    if pad:
        x = _random_crops(torch.nn.functional.pad(x, (pad, pad, pad, pad)), h, generator)
    if crop and crop < h:
        x = _random_crops(x, crop, generator)
    if flip:
        flipped = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
        x = torch.where(flipped[:, None, None, None], x.flip(3), x)
    return x


def fixed_crops(x: torch.Tensor, crop: int, label: str) -> torch.Tensor:
    """Evaluation images under a random-crop input (``augment.random_crop``): one random window per image,
    drawn once from a seed of `label`, so every run is evaluated on the same crops. (The RReg reference
    redraws them at every evaluation; a fixed draw keeps runs comparable.)"""
    if not crop or crop >= x.shape[2]:
        return x
    from paibench.utils import derive_seed

    return _random_crops(x, crop, torch.Generator().manual_seed(derive_seed("eval-crop", label, crop, len(x))))


def input_crop(payload: dict) -> int:
    """The random-crop size a payload's images are fed at (0: their stored size)."""
    return int(payload.get("augment", {}).get("random_crop", 0))
