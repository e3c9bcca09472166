"""What a run writes: epochs.csv, metrics.json (the reported accuracy and everything needed to trust it),
and the independent re-evaluation of saved weights (eval.json)."""

from __future__ import annotations

import copy
import math
import shlex
import sys
from pathlib import Path

from paibench.data.base import DatasetInfo
from paibench.names import MAC_KEYS
from paibench.pruning.maskio import load_mask, stats_path
from paibench.utils import atomic_path, read_json, write_json


def summarize(history: list[dict], cfg: dict, status: str, select_on_validation: bool = False) -> dict:
    """The reported accuracy of a run's epochs: final, best (on validation when there is one) or max_test.
    `select_on_validation`: the task always reports the best-validation epoch (Task.selects_on_validation)."""
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
        accuracy = best_acc if cfg["report"] == "best" or select_on_validation else final_acc
        report = "best-val" if select_on_validation or (cfg["report"] == "best" and on_val) else cfg["report"]
    top5 = {}
    if any("test_top5_acc" in h for h in finite):  # datasets with tasks.image.TOP5_MIN_CLASSES classes or more
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


def write_epochs_csv(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(",".join(keys) + "\n")
            for row in history:
                f.write(",".join("" if row.get(k) is None else str(row.get(k)) for k in keys) + "\n")


def command_line(member: str | None = None) -> str:
    """The command as a user types it: `paibench ...` (no absolute path of the installed script). For one run of
    a pack, its own part: the pack's command with only this run's ``--member`` (the others are other runs; a
    ``--manifest`` file, which the workflow writes for a pack, may be gone when the command is read)."""
    name = Path(sys.argv[0]).name
    argv = list(sys.argv[1:])
    members = ("--member", "--manifest")
    if member is not None and any(a.split("=", 1)[0] in members for a in argv):
        rest, i = [], 0
        while i < len(argv):
            if argv[i] in members:
                i += 2
                continue
            if argv[i].split("=", 1)[0] not in members:
                rest.append(argv[i])
            i += 1
        argv = rest[:1] + ["--member", member] + rest[1:]
    return shlex.join(["paibench" if name in ("paibench", "__main__.py") else name, *argv])


def mask_stats(mask_file, masks, model, info) -> dict:
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


# mask statistics a run's metrics.json repeats (runs.csv and the tables read them from there)
MASK_KEYS = ("effective_compression", "collapsed", "effective_compression_mica", "collapsed_mica", *MAC_KEYS)


def evaluate_run(data_file: str, mask_file: str, model_file: str, metrics_file: str, out: str,
                 device: str = "auto") -> dict:
    """Reload trained weights, check the mask still holds, and measure test accuracy independently."""
    from safetensors.torch import load_file

    from paibench.data import info_from_payload, load_prepared
    from paibench.models import build_model, prunable_parameters
    from paibench.tasks import task_for
    from paibench.training.masking import check_mask
    from paibench.training.recipe import device_name, pick_device

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
    task = task_for(info.kind)
    cfg = dict(metrics["train"], amp="off")
    result = task.evaluate_test(model, task.load(payload, dev, cfg), cfg)
    result.update({"pruned_nonzero": violations, "status": metrics["status"], "device": device_name(dev)})
    if metrics["status"] != "ok":
        result["test_acc"] = None
        result.pop("test_top5_acc", None)
    write_json(out, result)
    return result


__all__ = ["summarize", "write_epochs_csv", "command_line", "mask_stats", "evaluate_run", "MASK_KEYS"]
