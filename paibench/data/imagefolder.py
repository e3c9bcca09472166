"""Class-folder image sets (``<split>/<class>/<image>``) from a directory or from ``.tar``/``.tar.gz``/``.tar.xz``.

The root holds ``train`` and ``test`` either as folders or as archives (``train.tar.xz``), as in
``../shared/data/cifar10-jpeg``. Images are decoded once into the prepared uint8 tensor file; classes
are sorted by name (alphabetical = CIFAR-10 label order for CIFAR-10's class names).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from paibench.data.base import DatasetSpec, image_payload, local_path
from paibench.errors import PaibenchError
from paibench.options import Option

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm"}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz")


def _decode(data: bytes, size, mode: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert(mode)
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _iter_split(root: Path, split: str):
    """Yield (class_name, file_name, bytes) for one split, from a folder or an archive."""
    folder = root / split
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                yield path.relative_to(folder).parts[0], path.name, path.read_bytes()
        return
    for suffix in ARCHIVE_SUFFIXES:
        archive = root / f"{split}{suffix}"
        if archive.is_file():
            # Read in archive order (stream mode), then sort: extracting members of a compressed tar in
            # sorted order seeks backwards, and every backward seek in an .xz/.gz stream decompresses from
            # the start again (hours for CIFAR-10's 50,000 members instead of seconds).
            found = []
            with tarfile.open(archive, "r|*") as tar:
                for m in tar:
                    parts = Path(m.name).parts
                    if parts and parts[0] in (".", split):
                        parts = parts[1:]
                    if m.isfile() and len(parts) >= 2 and Path(m.name).suffix.lower() in IMAGE_SUFFIXES:
                        found.append((m.name, parts[0], parts[-1], tar.extractfile(m).read()))
            for _, cls, name, data in sorted(found, key=lambda item: item[0]):
                yield cls, name, data
            return
    raise PaibenchError(f"dataset.path: {root} has no '{split}' folder or {split}.tar[.gz|.xz] archive")


def _load_split(root: Path, split: str, size, mode: str, limit: int | None):
    per_class: dict[str, list] = {}
    for cls, _, data in _iter_split(root, split):
        items = per_class.setdefault(cls, [])
        if limit is None or len(items) < limit:
            items.append(data)
    return per_class


def prepare(options, raw_root):
    root = Path(options["path"]).expanduser()
    if not root.exists():
        raise PaibenchError(f"dataset.path: {str(root)!r} does not exist; expected a folder with train/ and test/")
    mode = "L" if options["grayscale"] else "RGB"
    size = options["size"] or None
    limit = options["max_per_class"] or None
    train = _load_split(root, "train", size, mode, limit)
    test = _load_split(root, "test", size, mode, limit and max(1, limit // 5))
    classes = sorted(train)
    if sorted(test) != classes:
        raise PaibenchError(f"dataset.path: train classes {classes} differ from test classes {sorted(test)}")

    def stack(split):
        xs, ys = [], []
        for label, cls in enumerate(classes):
            for data in split[cls]:
                xs.append(_decode(data, size, mode))
                ys.append(label)
        x = np.stack(xs).transpose(0, 3, 1, 2)
        return x, np.asarray(ys)

    x_train, y_train = stack(train)
    x_test, y_test = stack(test)
    return image_payload(
        options.get("name") or root.name, x_train, y_train, x_test, y_test, classes,
        source=f"imagefolder {root.resolve()}",
        augment={"crop_padding": options["crop_padding"], "flip": options["flip"]},
    )


def check_files(options, base_dir: Path):
    """The root holds train and test, each a folder or a tar archive (what _iter_split reads)."""
    if not options.get("path"):
        return ("path", "is missing", "the folder (or tar) holding train/ and test/, required for imagefolder")
    root = local_path(options["path"], base_dir)
    expected = "a folder holding train/ and test/ (folders or train.tar[.gz|.xz] / test.tar[.gz|.xz] archives)"
    if not root.exists():
        return ("path", "does not exist", expected)
    if not root.is_dir():
        return ("path", "is a file", expected)
    for split in ("train", "test"):
        if not (root / split).is_dir() and not any((root / f"{split}{sfx}").is_file() for sfx in ARCHIVE_SUFFIXES):
            return ("path", f"has no {split}/ folder or {split}.tar archive", expected)
    return None


SPEC = DatasetSpec(
    name="imagefolder",
    kind="image",
    prepare=prepare,
    info=None,
    options={
        "path": Option(str, None, help="folder holding train/ and test/ (folders or tar archives)"),
        "size": Option(int, 0, minimum=0, help="resize to size x size (0: keep; all images must match)"),
        "grayscale": Option(bool, False),
        "max_per_class": Option(int, 0, minimum=0, help="keep at most this many training images per class (0: all); test keeps a fifth"),
        "crop_padding": Option(int, 4, minimum=0),
        "flip": Option(bool, True),
        "name": Option(str, "", help="name recorded in the prepared file"),
    },
    check_files=check_files,
    description="class sub-folders from a directory or tar archive, e.g. ../shared/data/cifar10-jpeg",
)
