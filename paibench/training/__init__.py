"""Masked training with checkpoints (by time and after the last epoch), device-resident data and batched
on-device augmentation.

Modules: ``recipe`` (options, schedule, device, optimizer; no torch at import), ``masking`` (the one mask
enforcer and mask check), ``run`` (one run's state, checkpoint and resume, its epoch steps and outputs),
``loops`` (solo, packed loop and vmap), ``outputs`` (metrics.json, epochs.csv, re-evaluation). What differs
between images and graphs lives in ``paibench.tasks``.

Guarantees:
* the mask is enforced for the whole run (training.masking);
* no per-step host syncs: losses and accuracies accumulate on the device and are read once per epoch;
* several runs can be packed into one process (``train_pack``), each writing exactly a solo run's files;
* every random draw of epoch ``e`` comes from a generator seeded by (run key, e), so a run resumed from
  its checkpoint after a kill gives the same metrics as an uninterrupted one (exactly, on the CPU);
* a non-finite loss ends the run with ``status: diverged`` instead of an exception.
"""

from __future__ import annotations

from paibench.training.recipe import (  # torch-free: a config is read with these
    NOT_RESULT_TRAIN_KEYS,
    TRAIN_OPTIONS,
    lr_at,
    parse_train_config,
    resolve_threads,
)

_LAZY = {
    "RunSpec": "spec", "RunState": "run", "train_pack": "loops", "train_run": "loops", "PACK_MODES": "loops",
    "MaskEnforcer": "masking", "check_mask": "masking", "summarize": "outputs", "evaluate_run": "outputs",
    "command_line": "outputs",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"paibench.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'paibench.training' has no attribute {name!r}")


__all__ = ["NOT_RESULT_TRAIN_KEYS", "TRAIN_OPTIONS", "lr_at", "parse_train_config", "resolve_threads", *_LAZY]
