"""Tiny-ImageNet-200 from the official archive (cs231n), md5-checked, read straight from the zip.

The archive holds ``tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG,
val/val_annotations.txt}``; test labels were never published, so -- as FORCE, RReg and most PaI papers
do -- the 10,000 labelled validation images serve as the test split. Validation images lie in one folder
and are re-folded into their classes by ``val_annotations.txt`` (file name -> wnid). Classes are the
200 wnids sorted by name, i.e. the label order of an ImageFolder over the re-folded directories.
Images are 64x64 RGB (a few are grayscale JPEGs and are converted). Augmentation: random crop with
4-pixel padding and horizontal flip (FORCE ``experiments/datasets.py``).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from paibench.data.base import DatasetInfo, DatasetSpec, image_payload, local_path
from paibench.data.download import fetch
from paibench.errors import PaibenchError
from paibench.options import Option

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
# md5 of the official archive, as pinned by several public loaders of it (248,100,043 bytes).
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ROOT = "tiny-imagenet-200"


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if arr.shape != (64, 64, 3):
        raise PaibenchError(f"dataset: a Tiny-ImageNet image has shape {arr.shape}; expected (64, 64, 3)")
    return arr


def read_archive(path: Path, max_per_class: int = 0):
    """Parse the zip: returns (classes, x_train, y_train, x_val, y_val) with images N x 3 x 64 x 64 uint8."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        classes = sorted(w.strip() for w in zf.read(f"{ROOT}/wnids.txt").decode().split() if w.strip())
        index = {w: i for i, w in enumerate(classes)}
        train: list[tuple[str, int]] = []
        per_class: dict[int, int] = {}
        for name in sorted(names):
            parts = name.split("/")
            # tiny-imagenet-200/train/<wnid>/images/<wnid>_<k>.JPEG
            if len(parts) == 5 and parts[1] == "train" and parts[3] == "images" and parts[4].endswith(".JPEG"):
                label = index.get(parts[2])
                if label is None:
                    raise PaibenchError(f"dataset: {name} belongs to {parts[2]!r}, which is not in wnids.txt")
                if max_per_class and per_class.get(label, 0) >= max_per_class:
                    continue
                per_class[label] = per_class.get(label, 0) + 1
                train.append((name, label))
        val: list[tuple[str, int]] = []
        per_class = {}
        for line in zf.read(f"{ROOT}/val/val_annotations.txt").decode().splitlines():
            fields = line.split("\t")
            if len(fields) < 2:
                continue
            file_name, wnid = fields[0], fields[1]
            if wnid not in index:
                raise PaibenchError(f"dataset: val_annotations.txt labels {file_name} as {wnid!r}, not in wnids.txt")
            member = f"{ROOT}/val/images/{file_name}"
            if member not in names:
                raise PaibenchError(f"dataset: val_annotations.txt lists {file_name}, which the archive lacks")
            label = index[wnid]
            if max_per_class and per_class.get(label, 0) >= max(1, max_per_class // 10):
                continue
            per_class[label] = per_class.get(label, 0) + 1
            val.append((member, label))
        val.sort()

        def stack(items):
            x = np.stack([_decode(zf.read(n)) for n, _ in items]).transpose(0, 3, 1, 2)
            return x, np.asarray([label for _, label in items], dtype=np.int64)

        x_train, y_train = stack(train)
        x_val, y_val = stack(val)
    return classes, x_train, y_train, x_val, y_val


def prepare(options, raw_root: Path):
    if options["archive"]:
        path = Path(options["archive"]).expanduser()
        if not path.is_file():
            raise PaibenchError(f"dataset.archive: {str(path)!r} does not exist; expected the tiny-imagenet-200.zip file")
    else:
        path = fetch(URL, Path(raw_root) / "tiny-imagenet-200.zip", MD5, "md5")
    classes, x_train, y_train, x_val, y_val = read_archive(path, options["max_per_class"])
    return image_payload("tinyimagenet", x_train, y_train, x_val, y_val, classes,
                         source=f"{URL} (md5 {MD5}); test = official val split re-folded by val_annotations.txt",
                         augment=_augment(options["crop"]))


def _augment(crop: int) -> dict:
    """FORCE's 64x64 RandomCrop(64, padding=4) + flip, or the RReg reference's VGG input: RandomCrop(crop)
    (no padding) + flip on train *and* test images (tinyimagenet_cropped_loader.py)."""
    return {"crop_padding": 0, "flip": True, "random_crop": crop} if crop else {"crop_padding": 4, "flip": True}


def check_files(options, base_dir: Path):
    if not options.get("archive"):
        return None  # downloads (needs internet)
    path = local_path(options["archive"], base_dir)
    expected = "the tiny-imagenet-200.zip file"
    if not path.is_file():
        return ("archive", "is a folder" if path.is_dir() else "does not exist", expected)
    with open(path, "rb") as f:
        if f.read(2) != b"PK":
            return ("archive", "is not a zip archive", expected)
    return None


SPEC = DatasetSpec(
    name="tinyimagenet",
    kind="image",
    prepare=prepare,
    info=lambda options: DatasetInfo("tinyimagenet", "image", 200, channels=3,
                                     size=(options["crop"] or 64, options["crop"] or 64)),
    options={
        "archive": Option(str, "", help="a local tiny-imagenet-200.zip (used as is); empty: download (md5-checked)"),
        "max_per_class": Option(int, 0, minimum=0, help="keep at most this many training images per class (0: all); val keeps a tenth"),
        "crop": Option(int, 0, minimum=0, maximum=63,
                       help="0: 64x64 inputs; n: random n x n windows of train and test images (RReg reference VGG: 32)"),
    },
    check_files=check_files,
    train_examples=lambda options: 200 * (min(500, options["max_per_class"]) if options["max_per_class"] else 500),
    description="Tiny-ImageNet-200 official archive (md5-checked), val split re-folded as test, 64x64",
)
