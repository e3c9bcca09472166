"""Masked training with per-epoch checkpoints, device-resident data and batched on-device augmentation.

Guarantees:
* the mask is enforced for the whole run: pruned weights start at exactly zero and their gradients are
  zeroed before every optimizer step (one fused multi-tensor multiply); with a zero weight and a zero
  gradient, SGD (momentum, Nesterov, weight decay), Adam and AdamW all leave the weight, its momentum and
  its moments at exactly zero, so no second pass over the weights is needed per step (a guard re-applies
  the mask once per epoch);
* no per-step host syncs: losses and accuracies accumulate on the device and are read once per epoch;
* several runs can be packed into one process (``train_pack``), each writing exactly a solo run's files;
* every random draw of epoch ``e`` comes from a generator seeded by (run key, e), so a run resumed from
  its checkpoint after a kill gives the same metrics as an uninterrupted one (exactly, on the CPU);
* a non-finite loss ends the run with ``status: diverged`` instead of an exception.
"""

from __future__ import annotations

import json
import copy
import math
import shlex

import platform
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paibench.data import DATASETS, info_from_payload, load_prepared
from paibench.data.base import DatasetInfo, augment_images, fixed_crops, input_crop
from paibench.errors import PaibenchError
from paibench.models import build_model, prunable_parameters
from paibench.options import Option, parse_options
from paibench.progress import Progress
from paibench.pruning import init_seed
from paibench.pruning.maskio import check_fits, load_mask, stats_path
from paibench.utils import atomic_path, derive_seed, read_json, sha256_file, write_json

TRAIN_OPTIONS: dict[str, Option] = {
    "epochs": Option(int, 20, minimum=1),
    "batch_size": Option(int, 128, minimum=1),
    "optimizer": Option(str, "sgd", choices=("sgd", "adam", "adamw")),
    "lr": Option(float, 0.1, minimum=0.0),
    "momentum": Option(float, 0.9, minimum=0.0, maximum=1.0),
    "nesterov": Option(bool, True),
    "weight_decay": Option(float, 5e-4, minimum=0.0),
    "decay_scope": Option(str, "weights", choices=("weights", "all"),
                          help="weights: kernels/matrices only; all: biases and norm parameters too (the references)"),
    "schedule": Option(str, "step", choices=("step", "cosine", "constant")),
    "milestones": Option(list, [0.5, 0.75], help="step schedule: epochs (>= 1) or fractions of the run (< 1)"),
    "gamma": Option(float, 0.1, minimum=0.0),
    "warmup_epochs": Option(int, 0, minimum=0),
    "label_smoothing": Option(float, 0.0, minimum=0.0, maximum=1.0),
    "report": Option(str, "final", choices=("final", "best", "max_test"),
                     help="which epoch's test accuracy is 'accuracy': final; best (chosen on validation when there "
                          "is one); max_test (the maximum test accuracy over all epochs: test-set selection, as the "
                          "MiCA notebooks plot)"),
    "val_fraction": Option(float, 0.0, minimum=0.0, maximum=0.5,
                           help="image data: stratified share of the training split held out as validation "
                                "(the same images for every run on that data; 0: none)"),
    "eval_batch_size": Option(int, 1024, minimum=1),
    "device": Option(str, "auto", choices=("auto", "cpu", "cuda")),
    "amp": Option(str, "auto", choices=("auto", "bf16", "off"), help="bf16 autocast on GPUs that support it"),
    "channels_last": Option(bool, True, help="channels-last memory format for image models on GPU"),
    "compile": Option(bool, False, help="torch.compile the training forward (pays off on GPUs; needs a C++ compiler on CPU)"),
    "keep_checkpoint": Option(bool, False, affects_results=False,
                              help="keep the last checkpoint after a finished run"),
    "tensorboard": Option(bool, False, affects_results=False,
                          help="also log every epoch's metrics as TensorBoard scalars in <run>/tensorboard/ "
                               "(needs the optional 'tensorboard' package: pip install 'paibench[tensorboard]')"),
}
# Training options that do not change a run's results: changing them reruns nothing and seeds nothing.
NOT_RESULT_TRAIN_KEYS = tuple(k for k, o in TRAIN_OPTIONS.items() if not o.affects_results)
TOP5_MIN_CLASSES = 100  # top-5 accuracy is measured for datasets with at least this many classes


def parse_train_config(raw: dict[str, Any], field: str = "train") -> dict[str, Any]:
    cfg = parse_options(TRAIN_OPTIONS, raw, field)
    if cfg["tensorboard"]:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise PaibenchError(f"{field}.tensorboard: true is not allowed here; the 'tensorboard' package is not "
                                f"installed (pip install 'paibench[tensorboard]'), or set it to false")
    for m in cfg["milestones"]:
        if not isinstance(m, (int, float)) or isinstance(m, bool) or not math.isfinite(m) or m <= 0:
            raise PaibenchError(f"{field}.milestones: {m!r} is not allowed; expected positive numbers")
    return cfg


def lr_at(cfg: dict, epoch: int) -> float:
    """Learning rate for 0-based `epoch` (a pure function of the epoch, so resuming needs no scheduler state)."""
    base, total = cfg["lr"], cfg["epochs"]
    if cfg["warmup_epochs"] and epoch < cfg["warmup_epochs"]:
        return base * (epoch + 1) / cfg["warmup_epochs"]
    if cfg["schedule"] == "cosine":
        return 0.5 * base * (1 + math.cos(math.pi * epoch / total))
    if cfg["schedule"] == "step":
        marks = [m if m >= 1 else round(m * total) for m in cfg["milestones"]]
        return base * cfg["gamma"] ** sum(epoch >= m for m in marks)
    return base


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise PaibenchError("train.device: 'cuda' is not allowed here; no CUDA device is visible (use 'auto' or 'cpu')")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


# ----------------------------------------------------------------------------------------- data on device
def validation_indices(labels: torch.Tensor, fraction: float) -> torch.Tensor:
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

    def __init__(self, payload: dict, device: torch.device, val_fraction: float = 0.0):
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

    def normalize(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return (x_uint8.float().div_(255.0) - self.mean) / self.std

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return augment_images(x, self.pad, self.flip, generator, self.crop)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# ---------------------------------------------------------------------------------------------- masking
class MaskEnforcer:
    """Keeps pruned weights at exactly zero with fused multi-tensor ops (one kernel per list, not per layer)."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        params = prunable_parameters(model)
        self.weights = [params[n] for n in masks]
        self.masks = [masks[n].to(device=params[n].device, dtype=params[n].dtype) for n in masks]

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        # masked_fill, not multiply: a diverged run's NaN * 0 would stay NaN.
        for w, m in zip(self.weights, self.masks):
            w.masked_fill_(m == 0, 0.0)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        pairs = [(w.grad, m) for w, m in zip(self.weights, self.masks) if w.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])


def check_mask(masks: dict[str, torch.Tensor], model: nn.Module, mask_file: str | Path) -> None:
    """Refuse a mask whose parameter names or shapes do not match the architecture, or whose hash is off."""
    check_fits(masks, prunable_parameters(model), f"mask {mask_file}")
    stats_file = stats_path(mask_file)
    if stats_file.exists():
        # The .json's sha256 catches a mask replaced under the same name; a mask with its own content hash
        # (checked when it was loaded) stays usable when its .json was emptied or damaged.
        try:
            recorded = read_json(stats_file).get("sha256")
        except (ValueError, AttributeError):
            if _has_content_hash(mask_file):
                return
            raise PaibenchError(f"mask {mask_file}: its statistics file {stats_file} is unreadable and the mask has no "
                                f"content hash of its own; recompute it (paibench mask) or restore the .json") from None
        actual = sha256_file(mask_file)
        if recorded and recorded != actual:
            raise PaibenchError(f"mask {mask_file}: sha256 {actual[:12]}... differs from the {recorded[:12]}... "
                                f"recorded in {stats_file}; the file is corrupt or was replaced")


def _mask_stats(mask_file, masks, model, info) -> dict:
    """The mask's statistics JSON, recomputed from the mask when that file is missing or damaged."""
    try:
        stats = read_json(stats_path(mask_file))
        if isinstance(stats, dict) and "effective_compression" in stats:
            return stats
    except (OSError, ValueError):
        pass
    from paibench.pruning.stats import mask_statistics

    return mask_statistics(copy.deepcopy(model).cpu(), {n: m.detach().cpu().bool() for n, m in masks.items()},
                           info, graphs=False)


def command_line() -> str:
    """The command as a user types it: `paibench ...` (no absolute path of the installed script)."""
    name = Path(sys.argv[0]).name
    return shlex.join(["paibench" if name in ("paibench", "__main__.py") else name, *sys.argv[1:]])


def _has_content_hash(mask_file) -> bool:
    from safetensors import safe_open

    with safe_open(str(mask_file), framework="pt") as f:
        return bool((f.metadata() or {}).get("content_sha256"))


# --------------------------------------------------------------------------------------------- training
@dataclass
class RunSpec:
    data: str  # prepared dataset file
    mask: str
    out_dir: str
    checkpoint: str
    run_key: str
    train: dict
    dataset: str = ""
    arch: str = ""
    width: float = 1.0
    arch_options: dict | None = None
    seed: int = 0
    threads: int = 0
    spec: dict | None = None  # what the workflow made this run from (Grid.run_spec), recorded in metrics.json


def _optimizer(cfg: dict, model: nn.Module, device: torch.device):
    params = list(model.parameters())
    return _make_optimizer(cfg, params, [p.dim() for p in params], device)


def _make_optimizer(cfg: dict, params: list, dims: list[int], device: torch.device):
    """`dims`: each parameter's rank in one model (stacked pack parameters have one more)."""
    fused = {"fused": True} if device.type == "cuda" else {}
    decay, no_decay = [], []
    for p, d in zip(params, dims):
        (no_decay if d <= 1 and cfg["decay_scope"] == "weights" else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"] and cfg["momentum"] > 0, **fused)
    cls = torch.optim.Adam if cfg["optimizer"] == "adam" else torch.optim.AdamW
    return cls(groups, lr=cfg["lr"], **fused)


def _autocast(cfg: dict, device: torch.device):
    use = device.type == "cuda" and cfg["amp"] != "off" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use)


@torch.no_grad()
def evaluate_images(model, data: ImageData, cfg, x=None, y=None) -> dict[str, float]:
    """{"loss", "acc"} on the test split (or the given images), plus "top5_acc" for 100+ classes."""
    model.eval()
    x = data.x_test if x is None else x
    y = data.y_test if y is None else y
    loss = torch.zeros((), device=data.device)
    correct = torch.zeros((), device=data.device, dtype=torch.long)
    correct5 = torch.zeros((), device=data.device, dtype=torch.long)
    top5 = data.num_classes >= TOP5_MIN_CLASSES
    for i in range(0, len(y), cfg["eval_batch_size"]):
        xb = data.normalize(x[i : i + cfg["eval_batch_size"]])
        yb = y[i : i + cfg["eval_batch_size"]]
        with _autocast(cfg, data.device):
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


class GraphData:
    def __init__(self, payload: dict, device: torch.device):
        from paibench.models.gnn import normalized_adjacency

        self.device = device
        self.x = payload["x"].to(device)
        self.y = payload["y"].to(device)
        self.adj = normalized_adjacency(payload["edge_index"].to(device), self.x.shape[0])
        self.masks = {k: payload[f"{k}_mask"].to(device) for k in ("train", "val", "test")}
        # e.g. "ogbn-arxiv": accuracy by ogb.nodeproppred.Evaluator (see paibench/data/ogbn_arxiv.py)
        self.evaluator = payload.get("evaluator")


@torch.no_grad()
def evaluate_graph(model, data: GraphData) -> dict[str, float]:
    model.eval()
    out = model(data.x, data.adj).float()
    res = {}
    for split, m in data.masks.items():
        res[f"{split}_loss"] = F.cross_entropy(out[m], data.y[m]).item()
        res[f"{split}_acc"] = (out[m].argmax(1) == data.y[m]).float().mean().item()
    if getattr(data, "evaluator", None):
        from ogb.nodeproppred import Evaluator

        ogb_eval = Evaluator(data.evaluator)
        pred = out.argmax(1, keepdim=True)
        for split, m in data.masks.items():
            res[f"{split}_acc"] = float(ogb_eval.eval({"y_true": data.y[m].view(-1, 1), "y_pred": pred[m]})["acc"])
    return res


def _recipe_json(cfg: dict) -> str:
    """The recipe a checkpoint belongs to (options that change no number left out)."""
    return json.dumps({k: v for k, v in cfg.items() if k not in NOT_RESULT_TRAIN_KEYS}, sort_keys=True)


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def resolve_threads(threads: int) -> int:
    """``threads`` > 0 as given; 0 means every core this process may run on."""
    import os

    if threads > 0:
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class _Member:
    """One run's state (model, optimizer, mask, history); a solo run is a pack of one of these.

    Each member draws its batches and augmentations from its own generators seeded by (run key, epoch), and
    uses its own dropout RNG state, so interleaving members never changes what any of them sees.
    """

    def __init__(self, spec: RunSpec, device: torch.device, payload: dict, data, log):
        cfg = spec.train
        self.spec, self.cfg, self.device, self.data = spec, cfg, device, data
        self.log = log
        info = info_from_payload(payload)
        self.info = DatasetInfo(spec.dataset or info.name, info.kind, info.num_classes, info.channels, info.size,
                                info.num_features)
        self.masks, self.meta = load_mask(spec.mask)
        meta = self.meta
        self.arch = spec.arch or meta["arch"]
        self.width = spec.width if spec.arch else float(meta["width"])
        self.arch_options = spec.arch_options if spec.arch else json.loads(meta.get("arch_options", "{}"))
        model = build_model(self.arch, self.info, self.width, self.arch_options,
                            seed=init_seed(spec.dataset or meta["dataset"], self.arch, self.width,
                                           self.arch_options or {}, spec.seed))
        check_mask(self.masks, model, spec.mask)
        model.to(device)
        self.image = self.info.kind == "image"
        self.channels_last = self.image and device.type == "cuda" and cfg["channels_last"]
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.enforcer = MaskEnforcer(model, self.masks)
        self.enforcer.apply_to_weights()
        self.optimizer = _optimizer(cfg, model, device)
        self.history: list[dict] = []
        self.start_epoch = 0
        self.ckpt_path = Path(spec.checkpoint)
        state = None
        if self.ckpt_path.exists():
            try:  # weights_only: a checkpoint holding arbitrary pickled objects is refused, never executed
                state = torch.load(self.ckpt_path, map_location=device, weights_only=True)
            except Exception as exc:  # noqa: BLE001 (any unreadable checkpoint means: start this run over)
                log(f"ignoring checkpoint {self.ckpt_path}: unreadable with weights_only=True "
                    f"({type(exc).__name__}); starting from epoch 0")
        if state is not None:
            if isinstance(state, dict) and state.get("run_key") == spec.run_key and state.get("train") == _recipe_json(cfg):
                model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
                self.history = list(state["history"])
                self.start_epoch = int(state["epoch"])
                log(f"resumed from {self.ckpt_path} at epoch {self.start_epoch}")
            else:
                log(f"ignoring checkpoint {self.ckpt_path}: it belongs to another run or recipe")
        # Recompiles once for the short last batch; evaluation runs the eager model (no eval-mode recompile).
        self.step_model = torch.compile(model, dynamic=False) if cfg["compile"] else model
        self.status = "ok"
        if self.history and self.history[-1].get("status") == "diverged":
            self.status = "diverged"
        self.prior_seconds = sum(h["seconds"] for h in self.history)
        # Dropout draws from the global RNG; each member keeps its own state so packing cannot reorder draws.
        self.has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
        self.rng_state = None
        self.out_dir = Path(spec.out_dir)
        self.tensorboard = None
        if cfg["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))
        log(self.start_line())

    def start_line(self) -> str:
        """What the run is, in one line: device, threads, model and mask sizes, data."""
        kept = int(sum(int(m.sum()) for m in self.masks.values()))
        prunable = int(sum(m.numel() for m in self.masks.values()))
        params = sum(p.numel() for p in self.model.parameters())
        if self.image:
            data = (f"{len(self.data.y_train)} train / {len(self.data.y_test)} test images"
                    + (f" / {len(self.data.y_val)} validation" if self.data.x_val is not None else ""))
        else:
            data = (f"graph of {self.data.x.shape[0]} nodes, {self.data.x.shape[1]} features, "
                    f"{int(self.data.masks['train'].sum())} training nodes")
        ratio = f"{prunable / kept:.4g}x" if kept else "everything pruned"
        return (f"start {self.spec.run_key}: {self.arch} on {_device_name(self.device)}, "
                f"{params:,} parameters, kept {kept:,}/{prunable:,} prunable weights ({ratio}), "
                f"mask {self.spec.mask}, {data}, {self.cfg['epochs']} epochs"
                + (f" (resuming at epoch {self.start_epoch})" if self.start_epoch else ""))

    # ------------------------------------------------------------------------------------ per epoch
    def begin_epoch(self, epoch: int) -> None:
        self.epoch, self.lr = epoch, lr_at(self.cfg, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.gen = _generator(self.device, derive_seed(self.spec.run_key, "epoch", epoch))
        if self.has_dropout or not self.image:
            self.rng_state = _seeded_rng_state(self.device, derive_seed(self.spec.run_key, "dropout", epoch))
        self.model.train()
        if self.image:
            n = len(self.data.y_train)
            self.perm = torch.randperm(n, generator=self.gen, device=self.device)
            self.loss_sum = torch.zeros((), device=self.device)
            self.correct = torch.zeros((), device=self.device, dtype=torch.long)

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.perm[i : i + self.cfg["batch_size"]]
        xb = self.data.normalize(self.data.augment(self.data.x_train[idx], self.gen))
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, self.data.y_train[idx]

    def train_batch(self, i: int) -> None:
        """One optimizer step on batch ``i``; everything stays on the device (no host sync)."""
        xb, yb = self.batch(i)
        with _rng(self.device, self):
            with _autocast(self.cfg, self.device):
                out = self.step_model(xb)
                loss = F.cross_entropy(out.float(), yb, label_smoothing=self.cfg["label_smoothing"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.enforcer.apply_to_grads()  # the only per-step mask pass (see MaskEnforcer)
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(yb)
        self.correct += (out.argmax(1) == yb).sum()

    def graph_step(self) -> dict:
        data = self.data
        with _rng(self.device, self):
            out = self.step_model(data.x, data.adj)
            m = data.masks["train"]
            loss = F.cross_entropy(out[m], data.y[m], label_smoothing=self.cfg["label_smoothing"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.enforcer.apply_to_grads()
        self.optimizer.step()
        return {"train_loss": loss.detach()}

    def end_epoch(self, seconds_since: float, graph_out: dict | None = None) -> None:
        """Evaluate, append the epoch's row, and checkpoint (one host sync per epoch)."""
        self.enforcer.apply_to_weights()  # a no-op unless something non-finite crept in; once per epoch
        epoch, lr = self.epoch, self.lr
        if self.image:
            n = len(self.data.y_train)
            train_loss, correct = torch.stack([self.loss_sum, self.correct.to(self.loss_sum.dtype)]).tolist()
            train_acc = correct / n
            train_loss /= n
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc}
            if self.data.x_val is not None:
                ev = evaluate_images(self.model, self.data, self.cfg, self.data.x_val, self.data.y_val)
                row.update({f"val_{k}": v for k, v in ev.items()})
            row.update({f"test_{k}": v for k, v in evaluate_images(self.model, self.data, self.cfg).items()})
        else:
            ev = evaluate_graph(self.model, self.data)
            train_loss = float(graph_out["train_loss"])
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": ev["train_acc"],
                   "val_loss": ev["val_loss"], "val_acc": ev["val_acc"], "test_loss": ev["test_loss"],
                   "test_acc": ev["test_acc"]}
        row["seconds"] = time.perf_counter() - seconds_since
        if not math.isfinite(train_loss):
            self.status = "diverged"
            row["status"] = "diverged"
            self.log(f"epoch {epoch + 1}: loss is {train_loss}; stopping with status 'diverged'")
        self.history.append(row)
        # Rewritten (atomically) every epoch, so a running job can be watched and plotted.
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _write_epochs_csv(self.out_dir / "epochs.csv", self.history)
        self.log(f"epoch {epoch + 1}/{self.cfg['epochs']} "
                 + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                            if k != "epoch"))
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tensorboard.add_scalar(key.replace("_", "/", 1) if key.startswith(("train_", "val_", "test_"))
                                                else key, value, epoch + 1)
            self.tensorboard.flush()
        _save_checkpoint(self.ckpt_path, {
            "run_key": self.spec.run_key, "train": _recipe_json(self.cfg), "epoch": epoch + 1,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "history": self.history,
        })

    # --------------------------------------------------------------------------------------- outputs
    def finish(self, started: float) -> dict:
        spec, cfg, meta, masks, model = self.spec, self.cfg, self.meta, self.masks, self.model
        out_dir = Path(spec.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        from safetensors.torch import save_file

        with atomic_path(out_dir / "model.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
        _write_epochs_csv(out_dir / "epochs.csv", self.history)
        if self.tensorboard is not None:
            self.tensorboard.close()
        metrics = summarize(self.history, cfg, self.status, self.info.kind)
        kept = int(sum(int(m.sum()) for m in masks.values()))
        prunable = int(sum(m.numel() for m in masks.values()))
        mask_stats = _mask_stats(spec.mask, masks, model, self.info)
        metrics.update({
            "run_key": spec.run_key, "dataset": spec.dataset or meta["dataset"], "arch": self.arch,
            "width": self.width, "arch_options": self.arch_options, "method": meta["method"],
            "method_options": json.loads(meta.get("options", "{}")),
            "compression": float(meta["compression"]), "seed": spec.seed,
            "nominal_compression": prunable / kept if kept else None,
            "effective_compression": mask_stats.get("effective_compression"),
            "collapsed": mask_stats.get("collapsed"),
            # the MiCA reference's effective rule (paibench.pruning.effective.DEFINITIONS)
            "effective_compression_mica": mask_stats.get("effective_compression_mica"),
            "collapsed_mica": mask_stats.get("collapsed_mica"),
            # multiply-accumulates per example: dense, kept, effectively kept (absent in older mask stats)
            **{k: mask_stats.get(k) for k in ("macs", "macs_kept", "macs_effective", "macs_effective_mica")},
            "parameters": sum(p.numel() for p in model.parameters()), "prunable": prunable, "kept": kept,
            "mask_sha256": sha256_file(spec.mask), "train": cfg, "device": _device_name(self.device),
            "wall_time_s": self.prior_seconds + (time.perf_counter() - started),
            "torch": torch.__version__, "python": platform.python_version(), "host": socket.gethostname(),
            "command": command_line(),
        })
        if spec.spec is not None:
            metrics["spec"] = spec.spec
        write_json(out_dir / "metrics.json", metrics)
        if not cfg["keep_checkpoint"]:
            self.ckpt_path.unlink(missing_ok=True)
        return metrics


def _seeded_rng_state(device: torch.device, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(seed)
    return gen.get_state()


class _rng:
    """Run a block with the member's own global-RNG state (dropout), then store the advanced state."""

    def __init__(self, device: torch.device, member: "_Member"):
        self.device, self.member = device, member

    def __enter__(self):
        if self.member.rng_state is None:
            return
        cuda = self.device.type == "cuda"
        self.saved = torch.cuda.get_rng_state(self.device) if cuda else torch.get_rng_state()
        (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(self.member.rng_state, *([self.device] if cuda else []))

    def __exit__(self, *exc):
        if self.member.rng_state is None:
            return
        cuda = self.device.type == "cuda"
        self.member.rng_state = torch.cuda.get_rng_state(self.device) if cuda else torch.get_rng_state()
        (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(self.saved, *([self.device] if cuda else []))


PACK_MODES = ("auto", "loop", "vmap")


def _vmap_epoch(members: list[_Member], cfg: dict, device: torch.device, on_step=lambda: None) -> None:
    """One epoch of several same-architecture members as one vectorised model (torch.func.vmap).

    Convolutions of the N members become one grouped convolution, so N small models fill a GPU the way one
    large batch does. Parameters, buffers and optimizer state are stacked from the members at the start of
    the epoch and written back at its end, so checkpoints and outputs stay exactly those of solo runs.
    Results match solo training up to floating-point summation order (not bitwise).
    """
    from torch.func import functional_call, stack_module_state, vmap

    models = [m.model for m in members]
    base = models[0]
    params, buffers = stack_module_state(models)
    names = list(params)
    stacked = [params[k] for k in names]
    dims = [p.dim() - 1 for p in stacked]
    opt = _make_optimizer(cfg, stacked, dims, device)
    sds = [m.optimizer.state_dict() for m in members]
    state = {}
    for j, s in sds[0]["state"].items():
        state[j] = {k: (torch.stack([sd["state"][j][k] for sd in sds]) if torch.is_tensor(v) and v.dim() > 0 else v)
                    for k, v in s.items()}
    opt.load_state_dict({"state": state, "param_groups": sds[0]["param_groups"]})
    mask_by_name = {}
    for m in members:
        for n_, t in zip(m.masks, m.enforcer.masks):
            mask_by_name.setdefault(n_, []).append(t)
    grads_masks = [(params[n_], torch.stack(ts)) for n_, ts in mask_by_name.items()]

    def forward(p, b, x):
        return functional_call(base, (p, b), (x,))

    fwd = vmap(forward, randomness="different")
    base.train()
    n = len(members[0].data.y_train)
    loss_sums = torch.zeros(len(members), device=device)
    corrects = torch.zeros(len(members), device=device, dtype=torch.long)
    for i in range(0, n, cfg["batch_size"]):
        batches = [m.batch(i) for m in members]
        xs = torch.stack([b[0].contiguous() for b in batches])
        ys = torch.stack([b[1] for b in batches])
        with _autocast(cfg, device):
            out = fwd(params, buffers, xs)
            per = F.cross_entropy(out.flatten(0, 1).float(), ys.flatten(), reduction="none",
                                  label_smoothing=cfg["label_smoothing"]).view(ys.shape).mean(1)
        opt.zero_grad(set_to_none=True)
        per.sum().backward()  # members are independent, so each gets exactly its own loss's gradient
        pairs = [(p.grad, mk) for p, mk in grads_masks if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [mk for _, mk in pairs])
        opt.step()
        loss_sums += per.detach() * ys.shape[1]
        corrects += (out.argmax(-1) == ys).sum(1)
        on_step()
    with torch.no_grad():
        ssd = opt.state_dict()
        for i, m in enumerate(members):
            for k, p in m.model.named_parameters():
                p.copy_(params[k][i])
            for k, b in m.model.named_buffers():
                b.copy_(buffers[k][i])
            st = {j: {k: (v[i].clone() if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in s.items()}
                  for j, s in ssd["state"].items()}
            m.optimizer.load_state_dict({"state": st, "param_groups": m.optimizer.state_dict()["param_groups"]})
            m.loss_sum, m.correct = loss_sums[i], corrects[i]


def train_pack(specs: list[RunSpec], log=print, mode: str = "auto") -> list[dict]:
    """Train several runs in one process on one device; each writes exactly the files of a solo run.

    ``mode``: ``loop`` interleaves the members' steps batch by batch (bitwise equal to solo runs; on a GPU
    it only saves process start-up and data loading); ``vmap`` trains same-architecture image members as
    one vectorised model (the GPU throughput path); ``auto`` = ``vmap`` on CUDA for two or more image
    members, else ``loop``.
    """
    if not specs:
        return []
    if mode not in PACK_MODES:
        raise PaibenchError(f"pack mode: {mode!r} is not allowed; expected one of {', '.join(PACK_MODES)}")
    cfg = specs[0].train
    for s in specs[1:]:
        if s.train != cfg:
            raise PaibenchError(f"pack: run {s.run_key!r} has a different training recipe than {specs[0].run_key!r}; "
                                f"expected one recipe per pack")
    torch.set_num_threads(resolve_threads(specs[0].threads))
    device = pick_device(cfg["device"])
    loaded: dict[str, tuple] = {}
    members = []
    for s in specs:
        if s.data not in loaded:
            payload = load_prepared(s.data)
            kind = payload["kind"]
            loaded[s.data] = (payload, ImageData(payload, device, cfg["val_fraction"]) if kind == "image"
                              else GraphData(payload, device))
        payload, data = loaded[s.data]
        tag = f"[{s.run_key}] " if len(specs) > 1 else ""
        members.append(_Member(s, device, payload, data, (lambda msg, t=tag: log(t + msg))))
    image = members[0].image
    if any(m.image != image for m in members):
        raise PaibenchError("pack: image and graph runs cannot share a pack; expected one dataset kind per pack")
    same_shape = len({(m.arch, m.width, json.dumps(m.arch_options or {}, sort_keys=True), m.spec.data)
                      for m in members}) == 1
    use_vmap = image and len(members) > 1 and (mode == "vmap" or (mode == "auto" and device.type == "cuda"))
    if use_vmap and not same_shape:
        if mode == "vmap":
            raise PaibenchError("pack mode 'vmap': members differ in architecture, width or data; expected one "
                                "architecture per pack (or mode 'loop')")
        use_vmap = False
    if len(members) > 1:
        log(f"packing {len(members)} runs on {_device_name(device)} (mode {'vmap' if use_vmap else 'loop'})")
    started = time.perf_counter()
    for epoch in range(min(m.start_epoch for m in members), cfg["epochs"]):
        active = [m for m in members if m.status == "ok" and m.start_epoch <= epoch]
        if not active:
            break
        t0 = time.perf_counter()
        for m in active:
            m.begin_epoch(epoch)
        outs: list = [None] * len(active)
        if not image:
            outs = [m.graph_step() for m in active]
        else:
            n = len(active[0].data.y_train)
            bar = Progress(math.ceil(n / cfg["batch_size"]), label=f"epoch {epoch + 1}/{cfg['epochs']}",
                           per_step=min(n, cfg["batch_size"]) * len(active), rate_unit="img")
            try:
                if use_vmap and len(active) > 1:
                    _vmap_epoch(active, cfg, device, on_step=bar.update)
                else:
                    for i in range(0, n, cfg["batch_size"]):
                        for m in active:
                            m.train_batch(i)
                        bar.update()
            finally:
                bar.close()
        for m, o in zip(active, outs):
            m.end_epoch(t0, o)
    return [m.finish(started) for m in members]


def train_run(spec: RunSpec, log=print) -> dict:
    """Train one masked run, resuming from ``spec.checkpoint`` if it exists; writes metrics and epochs CSV."""
    return train_pack([spec], log=log, mode="loop")[0]


def summarize(history: list[dict], cfg: dict, status: str, kind: str) -> dict:
    finite = [h for h in history if math.isfinite(h.get("test_acc", float("nan")))]
    last = history[-1] if history else {}
    on_val = bool(finite) and all("val_acc" in h for h in finite)
    if on_val:  # model selection on validation accuracy (graphs always; images with val_fraction > 0)
        best = max(finite, key=lambda h: (h["val_acc"], -h["epoch"]))
    else:
        best = max(finite, key=lambda h: (h["test_acc"], -h["epoch"])) if finite else {}
    final_acc = last.get("test_acc") if status == "ok" else None
    best_acc = best.get("test_acc")
    max_test = max((h["test_acc"] for h in finite), default=None)
    if cfg["report"] == "max_test":
        accuracy, report = max_test, "max_test"
    else:
        accuracy = best_acc if cfg["report"] == "best" or kind == "graph" else final_acc
        report = "best-val" if kind == "graph" or (cfg["report"] == "best" and on_val) else cfg["report"]
    top5 = {}
    if any("test_top5_acc" in h for h in finite):  # datasets with TOP5_MIN_CLASSES classes or more
        final5 = last.get("test_top5_acc") if status == "ok" else None
        max5 = max((h["test_top5_acc"] for h in finite), default=None)
        chosen = max5 if report == "max_test" else (final5 if report == "final" else best.get("test_top5_acc"))
        top5 = {"final_test_top5_acc": final5, "best_test_top5_acc": best.get("test_top5_acc"),
                "max_test_top5_acc": max5, "top5_accuracy": chosen}
    return {
        "status": status, "epochs_run": len(history),
        "final_test_acc": final_acc, "best_test_acc": best_acc, "best_epoch": best.get("epoch"),
        "max_test_acc": max_test,
        "accuracy": accuracy,
        "final_test_loss": last.get("test_loss") if status == "ok" else None,
        "final_train_loss": last.get("train_loss") if status == "ok" else None,
        "final_train_acc": last.get("train_acc") if status == "ok" else None,
        "report": report,
        **top5,
    }


def _write_epochs_csv(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(",".join(keys) + "\n")
            for row in history:
                f.write(",".join("" if row.get(k) is None else str(row.get(k)) for k in keys) + "\n")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def evaluate_run(data_file: str, mask_file: str, model_file: str, metrics_file: str, out: str,
                 device: str = "auto") -> dict:
    """Reload trained weights, check the mask still holds, and measure test accuracy independently."""
    from safetensors.torch import load_file

    metrics = read_json(metrics_file)
    dev = pick_device(device)
    payload = load_prepared(data_file)
    info = info_from_payload(payload)
    info = DatasetInfo(metrics["dataset"], info.kind, info.num_classes, info.channels, info.size, info.num_features)
    model = build_model(metrics["arch"], info, metrics["width"], metrics["arch_options"] or {})
    model.load_state_dict(load_file(model_file))
    masks, _ = load_mask(mask_file)
    check_mask(masks, model, mask_file)
    params = prunable_parameters(model)
    violations = int(sum(int((params[n].detach() != 0)[~masks[n]].sum()) for n in masks))
    model.to(dev)
    cfg = dict(metrics["train"], amp="off")
    if info.kind == "image":
        result = {f"test_{k}": v for k, v in evaluate_images(model, ImageData(payload, dev), cfg).items()}
    else:
        ev = evaluate_graph(model, GraphData(payload, dev))
        result = {"test_loss": ev["test_loss"], "test_acc": ev["test_acc"], "val_acc": ev["val_acc"]}
    result.update({"pruned_nonzero": violations, "status": metrics["status"], "device": _device_name(dev)})
    if metrics["status"] != "ok":
        result["test_acc"] = None
        result.pop("test_top5_acc", None)
    write_json(out, result)
    return result


