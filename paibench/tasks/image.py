"""Image classification: uint8 images on the device once, batched augmentation there, accuracy (and top-5
for 100+ classes) on the test split, class-balanced or uniform pruning batches."""

from __future__ import annotations

import math

from paibench.data.base import augment_images, fixed_crops, info_from_payload, input_crop
from paibench.lazy import F, torch
from paibench.tasks.base import Task
from paibench.utils import derive_seed

TOP5_MIN_CLASSES = 100  # top-5 accuracy is measured for datasets with at least this many classes


def validation_indices(labels, fraction: float):
    """Sorted training indices held out as validation: round(fraction * n_c) of every class c.

    Seeded by the fraction and the labels only, so every run (method, seed, compression) on the same
    data holds out the same images, and the split never moves when the grid grows.
    """
    labels = labels.cpu()
    gen = torch.Generator().manual_seed(derive_seed("validation-split", f"{fraction:.6g}", len(labels),
                                                    int(labels.sum())))
    held = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        take = int(round(fraction * len(members)))
        held.append(members[torch.randperm(len(members), generator=gen)[:take]])
    return torch.sort(torch.cat(held)).values


class ImageData:
    """The prepared uint8 images on the device once; augmentation and normalisation run batched there."""

    def __init__(self, payload: dict, device, val_fraction: float = 0.0):
        self.device = device
        self.num_classes = info_from_payload(payload).num_classes
        x, y = payload["x_train"], payload["y_train"]
        self.crop = crop = input_crop(payload)
        self.x_val = self.y_val = None
        if val_fraction > 0:
            held = validation_indices(y, val_fraction)
            train = torch.ones(len(y), dtype=torch.bool)
            train[held] = False
            self.x_val, self.y_val = fixed_crops(x[held], crop, "val").to(device), y[held].to(device)
            x, y = x[train], y[train]
        self.x_train = x.to(device)
        self.y_train = y.to(device)
        self.x_test = fixed_crops(payload["x_test"], crop, "test").to(device)
        self.y_test = payload["y_test"].to(device)
        self.mean = payload["mean"].to(device).view(1, -1, 1, 1)
        self.std = payload["std"].to(device).view(1, -1, 1, 1)
        aug = payload.get("augment", {})
        self.pad = int(aug.get("crop_padding", 0))
        self.flip = bool(aug.get("flip", False))

    def normalize(self, x_uint8):
        return (x_uint8.float().div_(255.0) - self.mean) / self.std

    def augment(self, x, generator):
        return augment_images(x, self.pad, self.flip, generator, self.crop)


def evaluate_images(model, data: ImageData, cfg, x=None, y=None) -> dict[str, float]:
    """{"loss", "acc"} on the test split (or the given images), plus "top5_acc" for 100+ classes."""
    from paibench.training.recipe import autocast

    model.eval()
    x = data.x_test if x is None else x
    y = data.y_test if y is None else y
    with torch.no_grad():
        loss = torch.zeros((), device=data.device)
        correct = torch.zeros((), device=data.device, dtype=torch.long)
        correct5 = torch.zeros((), device=data.device, dtype=torch.long)
        top5 = data.num_classes >= TOP5_MIN_CLASSES
        for i in range(0, len(y), cfg["eval_batch_size"]):
            xb = data.normalize(x[i : i + cfg["eval_batch_size"]])
            yb = y[i : i + cfg["eval_batch_size"]]
            with autocast(cfg, data.device):
                out = model(xb)
            loss += F.cross_entropy(out.float(), yb, reduction="sum")
            correct += (out.argmax(1) == yb).sum()
            if top5:
                correct5 += (out.float().topk(5, dim=1).indices == yb.unsqueeze(1)).any(1).sum()
        loss_v, correct_v, correct5_v = torch.stack([loss, correct.to(loss.dtype), correct5.to(loss.dtype)]).tolist()
    result = {"loss": loss_v / len(y), "acc": correct_v / len(y)}  # one host sync above
    if top5:
        result["top5_acc"] = correct5_v / len(y)
    return result


def _normalized(payload: dict, xb):
    mean = payload["mean"].view(1, -1, 1, 1)
    std = payload["std"].view(1, -1, 1, 1)
    return ((xb.float() / 255.0) - mean) / std


def class_balanced_batches(payload: dict, per_class: int, generator, device):
    """Class-balanced batches (`per_class` images of every class), fresh draws each call, normalised."""
    x, y = payload["x_train"], payload["y_train"]
    by_class = [torch.nonzero(y == c).flatten() for c in range(int(payload["num_classes"]))]
    crop = input_crop(payload)

    def batches(n: int):
        for _ in range(n):
            idx = torch.cat([c[torch.randint(len(c), (min(per_class, len(c)),), generator=generator)] for c in by_class if len(c)])
            xb = augment_images(x[idx], 0, False, generator, crop) if crop else x[idx]  # the size the model sees
            yield (_normalized(payload, xb).to(device),), y[idx].to(device)

    batches.per_epoch = math.ceil(len(y) / max(1, sum(min(per_class, len(c)) for c in by_class)))
    return batches


def random_batches(payload: dict, batch_size: int, augment: bool, generator, device):
    """naver/force's pruning batches: each is `batch_size` training images drawn uniformly without
    replacement (the first batch of a freshly shuffled DataLoader), with the training augmentation when
    `augment` (its loader augments), normalised."""
    x, y = payload["x_train"], payload["y_train"]
    aug = payload.get("augment", {})
    pad, flip = int(aug.get("crop_padding", 0)), bool(aug.get("flip", False))

    def batches(n: int):
        for _ in range(n):
            idx = torch.randperm(len(y), generator=generator)[:batch_size]
            xb = augment_images(x[idx], pad if augment else 0, flip and augment, generator, input_crop(payload))
            yield (_normalized(payload, xb).to(device),), y[idx].to(device)

    batches.per_epoch = math.ceil(len(y) / batch_size)  # num_batches=-1: one pass worth of batches
    return batches


class ImageClassification(Task):
    kind = "image"
    autocast = True
    channels_last = True
    vmap = True
    seeded_forward = False

    def load(self, payload, device, cfg=None):
        return ImageData(payload, device, (cfg or {}).get("val_fraction", 0.0))

    def describe(self, data) -> str:
        return (f"{len(data.y_train)} train / {len(data.y_test)} test images"
                + (f" / {len(data.y_val)} validation" if data.x_val is not None else ""))

    def steps_per_epoch(self, data, batch_size):
        return math.ceil(len(data.y_train) / batch_size)

    def examples_per_step(self, data, batch_size):
        return min(len(data.y_train), batch_size)

    def epoch_order(self, data, generator):
        return torch.randperm(len(data.y_train), generator=generator, device=data.device)

    def batch(self, data, order, step, batch_size, generator, channels_last=False):
        idx = order[step * batch_size : (step + 1) * batch_size]
        xb = data.normalize(data.augment(data.x_train[idx], generator))
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return (xb,), data.y_train[idx], None

    def evaluate(self, model, data, cfg):
        row = {}
        if data.x_val is not None:
            ev = evaluate_images(model, data, cfg, data.x_val, data.y_val)
            row.update({f"val_{k}": v for k, v in ev.items()})
        row.update({f"test_{k}": v for k, v in evaluate_images(model, data, cfg).items()})
        return row

    def evaluate_test(self, model, data, cfg):
        return {f"test_{k}": v for k, v in evaluate_images(model, data, cfg).items()}

    def pruning_batches(self, payload, info, opts, generator, device):
        from paibench.pruning.methods.saliency import BATCHING_OPTIONS

        # a method that scores through another (mica/rpi with a snip budget) may lack these options
        opts = {**{k: o.default for k, o in BATCHING_OPTIONS.items()}, **opts}
        if opts["batching"] == "random":
            return random_batches(payload, int(opts["batch_size"]), bool(opts["augment"]), generator, device)
        return class_balanced_batches(payload, int(opts["samples_per_class"]), generator, device)

    def example_input(self, info, batch=1, dtype=None, fill=1.0):
        dtype = torch.float32 if dtype is None else dtype
        shape = (batch, info.channels, *info.size)
        return (torch.full(shape, fill, dtype=dtype) if fill is not None else torch.randn(*shape, dtype=dtype),)

    def data_shape(self, payload):
        return tuple(payload["x_train"].shape)


IMAGE_CLASSIFICATION = ImageClassification()
