"""Masked training with per-epoch checkpoints, device-resident data and batched on-device augmentation.

Guarantees:
* the mask is enforced for the whole run: gradients of pruned weights are zeroed before every optimizer
  step (so momentum and weight decay never move them) and the weights are re-multiplied by the mask after
  it, so pruned weights are exactly zero after every step;
* every random draw of epoch ``e`` comes from a generator seeded by (run key, e), so a run resumed from
  its checkpoint after a kill gives the same metrics as an uninterrupted one (exactly, on the CPU);
* a non-finite loss ends the run with ``status: diverged`` instead of an exception.
"""

from __future__ import annotations

import json
import math

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
from paibench.data.base import DatasetInfo
from paibench.errors import PaibenchError
from paibench.models import build_model, prunable_parameters
from paibench.options import Option, parse_options
from paibench.pruning import init_seed
from paibench.pruning.maskio import load_mask, stats_path
from paibench.utils import atomic_path, derive_seed, read_json, sha256_file, write_json

TRAIN_OPTIONS: dict[str, Option] = {
    "epochs": Option(int, 20, minimum=1),
    "batch_size": Option(int, 128, minimum=1),
    "optimizer": Option(str, "sgd", choices=("sgd", "adam", "adamw")),
    "lr": Option(float, 0.1, minimum=0.0),
    "momentum": Option(float, 0.9, minimum=0.0, maximum=1.0),
    "nesterov": Option(bool, True),
    "weight_decay": Option(float, 5e-4, minimum=0.0),
    "schedule": Option(str, "step", choices=("step", "cosine", "constant")),
    "milestones": Option(list, [0.5, 0.75], help="step schedule: epochs (>= 1) or fractions of the run (< 1)"),
    "gamma": Option(float, 0.1, minimum=0.0),
    "warmup_epochs": Option(int, 0, minimum=0),
    "label_smoothing": Option(float, 0.0, minimum=0.0, maximum=1.0),
    "report": Option(str, "final", choices=("final", "best"), help="which epoch's test accuracy is 'accuracy'"),
    "eval_batch_size": Option(int, 1024, minimum=1),
    "device": Option(str, "auto", choices=("auto", "cpu", "cuda")),
    "amp": Option(str, "auto", choices=("auto", "bf16", "off"), help="bf16 autocast on GPUs that support it"),
    "channels_last": Option(bool, True, help="channels-last memory format for image models on GPU"),
    "compile": Option(bool, False, help="torch.compile the model (GPU only)"),
    "keep_checkpoint": Option(bool, False, help="keep the last checkpoint after a finished run"),
}


def parse_train_config(raw: dict[str, Any], field: str = "train") -> dict[str, Any]:
    cfg = parse_options(TRAIN_OPTIONS, raw, field)
    for m in cfg["milestones"]:
        if not isinstance(m, (int, float)) or isinstance(m, bool) or m <= 0:
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
class ImageData:
    """The prepared uint8 images on the device once; augmentation and normalisation run batched there."""

    def __init__(self, payload: dict, device: torch.device):
        self.device = device
        self.x_train = payload["x_train"].to(device)
        self.y_train = payload["y_train"].to(device)
        self.x_test = payload["x_test"].to(device)
        self.y_test = payload["y_test"].to(device)
        self.mean = payload["mean"].to(device).view(1, -1, 1, 1)
        self.std = payload["std"].to(device).view(1, -1, 1, 1)
        aug = payload.get("augment", {})
        self.pad = int(aug.get("crop_padding", 0))
        self.flip = bool(aug.get("flip", False))

    def normalize(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return (x_uint8.float().div_(255.0) - self.mean) / self.std

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop with zero padding and random horizontal flip, one draw per image, no host sync."""
        b, c, h, w = x.shape
        if self.pad:
            p = self.pad
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=x.device)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            bi = torch.arange(b, device=x.device)[:, None, None, None]
            ci = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[bi, ci, rows, cols]
        if self.flip:
            flip = torch.rand(b, generator=generator, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


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
        torch._foreach_mul_(self.weights, self.masks)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        pairs = [(w.grad, m) for w, m in zip(self.weights, self.masks) if w.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])


def check_mask(masks: dict[str, torch.Tensor], model: nn.Module, mask_file: str | Path) -> None:
    """Refuse a mask whose parameter names or shapes do not match the architecture, or whose hash is off."""
    params = prunable_parameters(model)
    if set(masks) != set(params):
        missing, extra = sorted(set(params) - set(masks)), sorted(set(masks) - set(params))
        raise PaibenchError(f"mask {mask_file}: parameter names do not match the architecture "
                            f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for name, p in params.items():
        if tuple(masks[name].shape) != tuple(p.shape):
            raise PaibenchError(f"mask {mask_file}: {name} has shape {tuple(masks[name].shape)}, "
                                f"the architecture's weight has {tuple(p.shape)}")
    stats_file = stats_path(mask_file)
    if stats_file.exists():
        recorded = read_json(stats_file).get("sha256")
        actual = sha256_file(mask_file)
        if recorded and recorded != actual:
            raise PaibenchError(f"mask {mask_file}: sha256 {actual[:12]}... differs from the {recorded[:12]}... "
                                f"recorded in {stats_file}; the file is corrupt or was replaced")


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


def _optimizer(cfg: dict, model: nn.Module, device: torch.device):
    fused = {"fused": True} if device.type == "cuda" else {}
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.dim() <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"] and cfg["momentum"] > 0, **fused)
    cls = torch.optim.Adam if cfg["optimizer"] == "adam" else torch.optim.AdamW
    return cls(groups, lr=cfg["lr"], **fused)


def _autocast(cfg: dict, device: torch.device):
    use = device.type == "cuda" and cfg["amp"] != "off" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use)


@torch.no_grad()
def evaluate_images(model, data: ImageData, cfg, x=None, y=None) -> tuple[float, float]:
    model.eval()
    x = data.x_test if x is None else x
    y = data.y_test if y is None else y
    loss = torch.zeros((), device=data.device)
    correct = torch.zeros((), device=data.device, dtype=torch.long)
    for i in range(0, len(y), cfg["eval_batch_size"]):
        xb = data.normalize(x[i : i + cfg["eval_batch_size"]])
        yb = y[i : i + cfg["eval_batch_size"]]
        with _autocast(cfg, data.device):
            out = model(xb)
        loss += F.cross_entropy(out.float(), yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    return loss.item() / len(y), correct.item() / len(y)


class GraphData:
    def __init__(self, payload: dict, device: torch.device):
        from paibench.models.gnn import normalized_adjacency

        self.device = device
        self.x = payload["x"].to(device)
        self.y = payload["y"].to(device)
        self.adj = normalized_adjacency(payload["edge_index"].to(device), self.x.shape[0])
        self.masks = {k: payload[f"{k}_mask"].to(device) for k in ("train", "val", "test")}


@torch.no_grad()
def evaluate_graph(model, data: GraphData) -> dict[str, float]:
    model.eval()
    out = model(data.x, data.adj).float()
    res = {}
    for split, m in data.masks.items():
        res[f"{split}_loss"] = F.cross_entropy(out[m], data.y[m]).item()
        res[f"{split}_acc"] = (out[m].argmax(1) == data.y[m]).float().mean().item()
    return res


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_run(spec: RunSpec, log=print) -> dict:
    """Train one masked run, resuming from ``spec.checkpoint`` if it exists; writes metrics and epochs CSV."""
    cfg = spec.train
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = pick_device(cfg["device"])
    payload = load_prepared(spec.data)
    info = info_from_payload(payload)
    info = DatasetInfo(spec.dataset or info.name, info.kind, info.num_classes, info.channels, info.size, info.num_features)
    masks, meta = load_mask(spec.mask)
    arch = spec.arch or meta["arch"]
    width = spec.width if spec.arch else float(meta["width"])
    arch_options = spec.arch_options if spec.arch else json.loads(meta.get("arch_options", "{}"))
    model = build_model(arch, info, width, arch_options,
                        seed=init_seed(spec.dataset or meta["dataset"], arch, width, arch_options or {}, spec.seed))
    check_mask(masks, model, spec.mask)
    model.to(device)
    if info.kind == "image" and device.type == "cuda" and cfg["channels_last"]:
        model.to(memory_format=torch.channels_last)
    enforcer = MaskEnforcer(model, masks)
    enforcer.apply_to_weights()
    optimizer = _optimizer(cfg, model, device)
    history: list[dict] = []
    start_epoch = 0
    ckpt_path = Path(spec.checkpoint)
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        if state.get("run_key") == spec.run_key and state.get("train") == json.dumps(cfg, sort_keys=True):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            history = list(state["history"])
            start_epoch = int(state["epoch"])
            log(f"resumed from {ckpt_path} at epoch {start_epoch}")
        else:
            log(f"ignoring checkpoint {ckpt_path}: it belongs to another run or recipe")
    step_model = torch.compile(model) if cfg["compile"] and device.type == "cuda" else model

    status = "ok"
    if history and history[-1].get("status") == "diverged":
        status = "diverged"
    started = time.perf_counter()
    prior_seconds = sum(h["seconds"] for h in history)
    image = info.kind == "image"
    data = ImageData(payload, device) if image else GraphData(payload, device)
    for epoch in range(start_epoch, cfg["epochs"]):
        if status != "ok":
            break
        t0 = time.perf_counter()
        lr = lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        gen = _generator(device, derive_seed(spec.run_key, "epoch", epoch))
        model.train()
        if image:
            n = len(data.y_train)
            perm = torch.randperm(n, generator=gen, device=device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            for i in range(0, n, cfg["batch_size"]):
                idx = perm[i : i + cfg["batch_size"]]
                xb = data.normalize(data.augment(data.x_train[idx], gen))
                if device.type == "cuda" and cfg["channels_last"]:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yb = data.y_train[idx]
                with _autocast(cfg, device):
                    out = step_model(xb)
                    loss = F.cross_entropy(out.float(), yb, label_smoothing=cfg["label_smoothing"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                enforcer.apply_to_grads()
                optimizer.step()
                enforcer.apply_to_weights()
                loss_sum += loss.detach() * len(idx)
                correct += (out.argmax(1) == yb).sum()
            train_loss, train_acc = loss_sum.item() / n, correct.item() / n
            test_loss, test_acc = evaluate_images(model, data, cfg)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                   "test_loss": test_loss, "test_acc": test_acc}
        else:
            torch.manual_seed(derive_seed(spec.run_key, "dropout", epoch))  # dropout masks
            out = step_model(data.x, data.adj)
            m = data.masks["train"]
            loss = F.cross_entropy(out[m], data.y[m], label_smoothing=cfg["label_smoothing"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            enforcer.apply_to_grads()
            optimizer.step()
            enforcer.apply_to_weights()
            ev = evaluate_graph(model, data)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss.item(), "train_acc": ev["train_acc"],
                   "val_loss": ev["val_loss"], "val_acc": ev["val_acc"], "test_loss": ev["test_loss"], "test_acc": ev["test_acc"]}
            train_loss = row["train_loss"]
        row["seconds"] = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            status = "diverged"
            row["status"] = "diverged"
            log(f"epoch {epoch + 1}: loss is {train_loss}; stopping with status 'diverged'")
        history.append(row)
        log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        _save_checkpoint(ckpt_path, {
            "run_key": spec.run_key, "train": json.dumps(cfg, sort_keys=True), "epoch": epoch + 1,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
        })

    out_dir = Path(spec.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    _write_epochs_csv(out_dir / "epochs.csv", history)
    metrics = summarize(history, cfg, status, info.kind)
    kept = int(sum(int(m.sum()) for m in masks.values()))
    prunable = int(sum(m.numel() for m in masks.values()))
    mask_stats = read_json(stats_path(spec.mask)) if stats_path(spec.mask).exists() else {}
    metrics.update({
        "run_key": spec.run_key, "dataset": spec.dataset or meta["dataset"], "arch": arch, "width": width,
        "arch_options": arch_options, "method": meta["method"], "method_options": json.loads(meta.get("options", "{}")),
        "compression": float(meta["compression"]), "seed": spec.seed,
        "nominal_compression": prunable / kept if kept else None,
        "effective_compression": mask_stats.get("effective_compression"),
        "collapsed": mask_stats.get("collapsed"),
        "parameters": sum(p.numel() for p in model.parameters()), "prunable": prunable, "kept": kept,
        "mask_sha256": sha256_file(spec.mask), "train": cfg, "device": _device_name(device),
        "wall_time_s": prior_seconds + (time.perf_counter() - started),
        "torch": torch.__version__, "python": platform.python_version(), "host": socket.gethostname(),
        "command": " ".join(sys.argv),
    })
    write_json(out_dir / "metrics.json", metrics)
    if not cfg["keep_checkpoint"]:
        ckpt_path.unlink(missing_ok=True)
    return metrics


def summarize(history: list[dict], cfg: dict, status: str, kind: str) -> dict:
    finite = [h for h in history if math.isfinite(h.get("test_acc", float("nan")))]
    last = history[-1] if history else {}
    if kind == "graph" and finite:  # model selection on validation accuracy, as for Planetoid/OGB
        best = max(finite, key=lambda h: (h["val_acc"], -h["epoch"]))
    else:
        best = max(finite, key=lambda h: (h["test_acc"], -h["epoch"])) if finite else {}
    final_acc = last.get("test_acc") if status == "ok" else None
    best_acc = best.get("test_acc")
    return {
        "status": status, "epochs_run": len(history),
        "final_test_acc": final_acc, "best_test_acc": best_acc, "best_epoch": best.get("epoch"),
        "accuracy": best_acc if cfg["report"] == "best" or kind == "graph" else final_acc,
        "final_test_loss": last.get("test_loss") if status == "ok" else None,
        "final_train_loss": last.get("train_loss") if status == "ok" else None,
        "final_train_acc": last.get("train_acc") if status == "ok" else None,
        "report": "best-val" if kind == "graph" else cfg["report"],
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
        loss, acc = evaluate_images(model, ImageData(payload, dev), cfg)
        result = {"test_loss": loss, "test_acc": acc}
    else:
        ev = evaluate_graph(model, GraphData(payload, dev))
        result = {"test_loss": ev["test_loss"], "test_acc": ev["test_acc"], "val_acc": ev["val_acc"]}
    result.update({"pruned_nonzero": violations, "status": metrics["status"], "device": _device_name(dev)})
    if metrics["status"] != "ok":
        result["test_acc"] = None
    write_json(out, result)
    return result


