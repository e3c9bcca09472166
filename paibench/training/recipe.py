"""The training recipe: its options (declared once), the learning-rate schedule, the device and threads,
the optimizer and autocast. No torch at import (a config is read with ``parse_train_config``)."""

from __future__ import annotations

import math
from typing import Any

from paibench.errors import PaibenchError
from paibench.lazy import torch
from paibench.options import Option, parse_options, recorded_options

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
    "feature_product": Option(str, "auto", choices=("auto", "sparse", "dense"), omit_default=True,
                              help="graph data: sparse: the node features (first layer) and the adjacency (every "
                                   "layer) multiplied as CSR matrices; dense: dense features and a COO adjacency; "
                                   "auto: sparse on the CPU when <= 10 % of the features are nonzero (Cora, "
                                   "CiteSeer), else dense. Same products up to float summation order"),
    "compile": Option(bool, False, help="torch.compile the training forward (meant for GPUs; on the CPU it needs a C++ "
                                        "compiler and does not pay off for small runs: results/benchmarks/compile_cpu.md)"),
    "keep_checkpoint": Option(bool, False, affects_results=False,
                              help="keep the last checkpoint after a finished run"),
    "checkpoint_interval_s": Option(float, 30.0, minimum=0.0, affects_results=False,
                                    help="an unfinished run's checkpoint (and epochs.csv) is rewritten after the first "
                                         "epoch that ends at least this many seconds after the last write, and after "
                                         "its last epoch; 0: after every epoch. A killed run retrains at most these "
                                         "seconds plus one epoch, to the same numbers"),
    "tensorboard": Option(bool, False, affects_results=False,
                          help="also log every epoch's metrics as TensorBoard scalars in <run>/tensorboard/ "
                               "(needs the optional 'tensorboard' package: pip install 'paibench[tensorboard]')"),
}
# Training options that do not change a run's results: changing them reruns nothing and seeds nothing.
NOT_RESULT_TRAIN_KEYS = tuple(k for k, o in TRAIN_OPTIONS.items() if not o.affects_results)


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


def result_recipe(cfg: dict) -> dict:
    """The recipe without the options that change no number (what seeds, checkpoints and specs record), and
    without options added later while at their default (recipes recorded before them stay the same)."""
    return recorded_options(TRAIN_OPTIONS, {k: v for k, v in cfg.items() if k not in NOT_RESULT_TRAIN_KEYS})


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


def pick_device(choice: str):
    if choice == "cuda" and not torch.cuda.is_available():
        raise PaibenchError("train.device: 'cuda' is not allowed here; no CUDA device is visible (use 'auto' or 'cpu')")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def device_name(device) -> str:
    import platform

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def resolve_threads(threads: int) -> int:
    """``threads`` > 0 as given; 0 means OMP_NUM_THREADS when it is set (as torch itself reads it), else every
    core this process may run on."""
    import os

    if threads > 0:
        return threads
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def model_optimizer(cfg: dict, model, device):
    params = list(model.parameters())
    return make_optimizer(cfg, params, [p.dim() for p in params], device)


def make_optimizer(cfg: dict, params: list, dims: list[int], device):
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


def autocast(cfg: dict, device, allowed: bool = True):
    """bf16 autocast on CUDA devices that support it, unless the recipe (``amp: off``) or the task says no."""
    use = allowed and device.type == "cuda" and cfg["amp"] != "off" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use)
