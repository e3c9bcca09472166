"""scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes): the offline image default."""

from __future__ import annotations

import numpy as np

from paibench.data.base import DatasetInfo, DatasetSpec, image_payload
from paibench.options import Option


def prepare(options, raw_root):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=options["test_fraction"], random_state=0, stratify=digits.target
    )
    return image_payload(
        "digits", x_train, y_train, x_test, y_test, [str(i) for i in range(10)],
        source="sklearn.datasets.load_digits (bundled with scikit-learn)",
        augment={"crop_padding": 1, "flip": False},  # digits are not mirror-symmetric
    )


SPEC = DatasetSpec(
    name="digits",
    kind="image",
    prepare=prepare,
    info=lambda options: DatasetInfo("digits", "image", 10, channels=1, size=(8, 8)),
    train_examples=lambda options: round(1797 * (1 - options["test_fraction"])),
    options={"test_fraction": Option(float, 0.2, minimum=0.05, maximum=0.5, help="stratified test split")},
    description="scikit-learn digits, 8x8 grayscale, stratified split with a fixed seed",
)
