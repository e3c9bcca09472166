"""One run's state: what it trains (RunSpec), its model, optimizer, mask and history, its checkpoint and
resume, one epoch's steps, and its outputs. A solo run is a pack of one (training.loops)."""

from __future__ import annotations

import json
import math
import platform
import socket
import time
from pathlib import Path

from paibench import paths
from paibench.data.base import DatasetInfo
from paibench.lazy import F, nn, torch
from paibench.pruning.maskio import load_mask
from paibench.training.masking import MaskEnforcer, check_mask
from paibench.training.outputs import MASK_KEYS, command_line, mask_stats, summarize, write_epochs_csv
from paibench.training.spec import RunSpec  # noqa: F401 (re-exported)
from paibench.training.recipe import autocast, device_name, lr_at, model_optimizer, result_recipe
from paibench.utils import atomic_path, derive_seed, sha256_file, write_json


def _recipe_json(cfg: dict) -> str:
    """The recipe a checkpoint belongs to (options that change no number left out)."""
    return json.dumps(result_recipe(cfg), sort_keys=True)


# The clock of checkpoint_interval_s (a test replaces it to place checkpoints without waiting).
_clock = time.monotonic


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _generator(device, seed: int):
    return torch.Generator(device=device).manual_seed(seed)


def _seeded_rng_state(device, seed: int):
    return torch.Generator(device=device).manual_seed(seed).get_state()


class RunState:
    """One run's state (model, optimizer, mask, history); a solo run is a pack of one of these.

    Each run draws its batches and augmentations from its own generators seeded by (run key, epoch), and
    uses its own dropout RNG state, so interleaving runs never changes what any of them sees.
    """

    def __init__(self, spec: RunSpec, device, payload: dict, data, task, log):
        from paibench.data import info_from_payload
        from paibench.models import ARCHS, build_model
        from paibench.pruning import init_seed

        cfg = spec.train
        self.spec, self.cfg, self.device, self.data, self.task = spec, cfg, device, data, task
        self.log = log
        info = info_from_payload(payload)
        self.info = DatasetInfo(spec.dataset or info.name, info.kind, info.num_classes, info.channels, info.size,
                                info.num_features)
        self.masks, self.meta = load_mask(spec.mask)
        meta = self.meta
        self.arch = spec.arch or meta["arch"]
        self.width = spec.width if spec.arch else float(meta["width"])
        raw_options = spec.arch_options if spec.arch else json.loads(meta.get("arch_options", "{}"))
        # Typed and complete, as make_mask reads them: the initial weights (and so the seed derived from the
        # options) must be those the mask was computed on, whether options come as `skip=true`, True or not at all.
        self.arch_options = ARCHS.get(self.arch).parse_options(raw_options or {}, "arch option")
        self.init_seed = init_seed(spec.dataset or meta["dataset"], self.arch, self.width, self.arch_options, spec.seed)
        model = build_model(self.arch, self.info, self.width, self.arch_options, seed=self.init_seed)
        check_mask(self.masks, model, spec.mask)
        model.to(device)
        self.channels_last = task.channels_last and device.type == "cuda" and cfg["channels_last"]
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.enforcer = MaskEnforcer(model, self.masks)
        self.enforcer.apply_to_weights()
        self.optimizer = model_optimizer(cfg, model, device)
        self.history: list[dict] = []
        self.start_epoch = 0
        self.ckpt_path = Path(spec.checkpoint)
        self._resume(log)
        self.saved_at = _clock()  # checkpoint_interval_s counts from here
        # Recompiles once for the short last batch; evaluation runs the eager model (no eval-mode recompile).
        self.step_model = torch.compile(model, dynamic=False) if cfg["compile"] else model
        self.status = "ok"
        if self.history and self.history[-1].get("status") == "diverged":
            self.status = "diverged"
        # Dropout draws from the global RNG; each run keeps its own state so packing cannot reorder draws.
        self.has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
        self.rng_state = None
        self.out_dir = Path(spec.out_dir)
        self.tensorboard = None
        if cfg["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))
        log(self.start_line())

    def _resume(self, log) -> None:
        if not self.ckpt_path.exists():
            return
        try:  # weights_only: a checkpoint holding arbitrary pickled objects is refused, never executed
            state = torch.load(self.ckpt_path, map_location=self.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 (any unreadable checkpoint means: start this run over)
            log(f"ignoring checkpoint {self.ckpt_path}: unreadable with weights_only=True "
                f"({type(exc).__name__}); starting from epoch 0")
            return
        # A checkpoint left by an interrupted run resumes only the same run: key, recipe and mask content.
        if (isinstance(state, dict) and state.get("run_key") == self.spec.run_key
                and state.get("train") == _recipe_json(self.cfg)
                and state.get("mask", self.meta.get("content_sha256")) == self.meta.get("content_sha256")):
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.history = list(state["history"])
            self.start_epoch = int(state["epoch"])
            log(f"resumed from {self.ckpt_path} at epoch {self.start_epoch}")
        else:
            log(f"ignoring checkpoint {self.ckpt_path}: it belongs to another run, recipe or mask")

    def start_line(self) -> str:
        """What the run is, in one line: device, threads, model and mask sizes, data."""
        kept = int(sum(int(m.sum()) for m in self.masks.values()))
        prunable = int(sum(m.numel() for m in self.masks.values()))
        params = sum(p.numel() for p in self.model.parameters())
        ratio = f"{prunable / kept:.4g}x" if kept else "everything pruned"
        return (f"start {self.spec.run_key}: {self.arch} on {device_name(self.device)}, "
                f"{params:,} parameters, kept {kept:,}/{prunable:,} prunable weights ({ratio}), "
                f"mask {self.spec.mask}, {self.task.describe(self.data)}, {self.cfg['epochs']} epochs"
                + (f" (resuming at epoch {self.start_epoch})" if self.start_epoch else ""))

    # ------------------------------------------------------------------------------------ per epoch
    def begin_epoch(self, epoch: int) -> None:
        self.epoch, self.lr = epoch, lr_at(self.cfg, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.gen = _generator(self.device, derive_seed(self.spec.run_key, "epoch", epoch))
        if self.has_dropout or self.task.seeded_forward:
            self.rng_state = _seeded_rng_state(self.device, derive_seed(self.spec.run_key, "dropout", epoch))
        self.model.train()
        self.order = self.task.epoch_order(self.data, self.gen)
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.seen = 0

    def batch(self, step: int):
        return self.task.batch(self.data, self.order, step, self.cfg["batch_size"], self.gen, self.channels_last)

    def train_batch(self, step: int) -> None:
        """One optimizer step on batch ``step``; everything stays on the device (no host sync)."""
        inputs, targets, select = self.batch(step)
        with _rng(self.device, self):
            with autocast(self.cfg, self.device, self.task.autocast):
                out = self.step_model(*inputs)
                if select is not None:
                    out = out[select]
                loss = F.cross_entropy(out.float(), targets, label_smoothing=self.cfg["label_smoothing"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.enforcer.apply_to_grads()  # the only per-step mask pass (training.masking)
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(targets)
        self.correct += (out.argmax(1) == targets).sum()
        self.seen += len(targets)

    def end_epoch(self, train_seconds: float) -> None:
        """Evaluate, append the epoch's row, and checkpoint when checkpoint_interval_s has passed or the run ends
        (one host sync per epoch).
        ``train_seconds``: this run's training time of the epoch (in a pack, its share of the pack's steps)."""
        evaluation_started = time.perf_counter()
        self.enforcer.apply_to_weights()  # a no-op unless something non-finite crept in; once per epoch
        epoch, lr = self.epoch, self.lr
        loss_sum, correct = torch.stack([self.loss_sum, self.correct.to(self.loss_sum.dtype)]).tolist()
        train_loss = loss_sum / max(1, self.seen)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": correct / max(1, self.seen)}
        row.update(self.task.evaluate(self.model, self.data, self.cfg))
        row["seconds"] = train_seconds + (time.perf_counter() - evaluation_started)
        if not math.isfinite(train_loss):
            self.status = "diverged"
            row["status"] = "diverged"
            self.log(f"epoch {epoch + 1}: loss is {train_loss}; stopping with status 'diverged'")
        self.history.append(row)
        # Short epochs (a graph's full-batch step: milliseconds) would otherwise spend as long writing files as
        # training. The last epoch is always saved: a job killed while writing outputs then retrains nothing.
        last = epoch + 1 == self.cfg["epochs"] or self.status != "ok"
        if last or _clock() - self.saved_at >= self.cfg["checkpoint_interval_s"]:
            self._save_progress()
        self.log(f"epoch {epoch + 1}/{self.cfg['epochs']} "
                 + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                            if k != "epoch"))
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tensorboard.add_scalar(key.replace("_", "/", 1) if key.startswith(("train_", "val_", "test_"))
                                                else key, value, epoch + 1)
            self.tensorboard.flush()

    def _save_progress(self) -> None:
        """Checkpoint the run, then rewrite its epochs.csv (atomically, so a running job can be watched and
        plotted; in this order, the file never shows an epoch that a resumed run would train again)."""
        _save_checkpoint(self.ckpt_path, {
            "run_key": self.spec.run_key, "train": _recipe_json(self.cfg), "mask": self.meta.get("content_sha256"),
            "epoch": self.epoch + 1,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "history": self.history,
        })
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_epochs_csv(self.out_dir / paths.EPOCHS, self.history)
        self.saved_at = _clock()

    # --------------------------------------------------------------------------------------- outputs
    def finish(self, pack_size: int = 1, pack_mode: str = "loop") -> dict:
        spec, cfg, meta, masks, model = self.spec, self.cfg, self.meta, self.masks, self.model
        out_dir = Path(spec.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        from safetensors.torch import save_file

        with atomic_path(out_dir / paths.MODEL) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
        write_epochs_csv(out_dir / paths.EPOCHS, self.history)
        if self.tensorboard is not None:
            self.tensorboard.close()
        metrics = summarize(self.history, cfg, self.status, self.task.selects_on_validation)
        kept = int(sum(int(m.sum()) for m in masks.values()))
        prunable = int(sum(m.numel() for m in masks.values()))
        stats = mask_stats(spec.mask, masks, model, self.info)
        metrics.update({
            "run_key": spec.run_key, "dataset": spec.dataset or meta["dataset"], "arch": self.arch,
            "width": self.width, "arch_options": self.arch_options, "method": meta["method"],
            "method_options": json.loads(meta.get("options", "{}")),
            "compression": float(meta["compression"]), "seed": spec.seed,
            "nominal_compression": prunable / kept if kept else None,
            # effective compression under both definitions (pruning.effective.DEFINITIONS) and the
            # multiply-accumulates per example (absent in older mask statistics)
            **{k: stats.get(k) for k in MASK_KEYS},
            "parameters": sum(p.numel() for p in model.parameters()), "prunable": prunable, "kept": kept,
            "mask_sha256": sha256_file(spec.mask), "train": cfg, "device": device_name(self.device),
            # the sum of its epochs' times (in a pack: its share of the pack's steps, and its own evaluations)
            "wall_time_s": sum(h["seconds"] for h in self.history), "pack_size": pack_size, "pack_mode": pack_mode,
            "torch": torch.__version__, "python": platform.python_version(), "host": socket.gethostname(),
            "command": command_line(spec.member_json()),
        })
        if spec.spec is not None:
            metrics["spec"] = spec.spec
        write_json(out_dir / paths.METRICS, metrics)
        return metrics

    def drop_checkpoint(self) -> None:
        """Called once every run of the job has written its files (training.loops.train_pack)."""
        if not self.cfg["keep_checkpoint"]:
            self.ckpt_path.unlink(missing_ok=True)


class _rng:
    """Run a block with the run's own global-RNG state (dropout), then store the advanced state."""

    def __init__(self, device, run: RunState):
        self.device, self.run = device, run

    def __enter__(self):
        if self.run.rng_state is None:
            return
        cuda = self.device.type == "cuda"
        self.saved = torch.cuda.get_rng_state(self.device) if cuda else torch.get_rng_state()
        (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(self.run.rng_state, *([self.device] if cuda else []))

    def __exit__(self, *exc):
        if self.run.rng_state is None:
            return
        cuda = self.device.type == "cuda"
        self.run.rng_state = torch.cuda.get_rng_state(self.device) if cuda else torch.get_rng_state()
        (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(self.saved, *([self.device] if cuda else []))
