"""The contract of a task (see paibench/tasks/__init__.py)."""

from __future__ import annotations

from typing import Any


class Task:
    """What training, pruning and evaluation need to know about one kind of data.

    ``data`` below is what :meth:`load` returns: the prepared payload's tensors on the training device.
    """

    kind = ""
    autocast = True  # bf16 autocast on GPUs is safe for this task's models
    channels_last = False  # the channels-last memory format applies to its inputs
    vmap = False  # same-architecture runs can train as one vectorised model (training.loops)
    seeded_forward = False  # every forward draws from the run's own RNG state (dropout regardless of the model)
    selects_on_validation = False  # reported accuracy: always the best-validation epoch (the dataset has a val split)

    def load(self, payload: dict, device, cfg: dict | None = None) -> Any:
        """The payload's tensors on ``device``, as the training recipe ``cfg`` wants them (``val_fraction``,
        ``feature_product``; None: the defaults)."""
        raise NotImplementedError

    def describe(self, data) -> str:
        """The data part of a run's start line."""
        raise NotImplementedError

    def steps_per_epoch(self, data, batch_size: int) -> int:
        raise NotImplementedError

    def examples_per_step(self, data, batch_size: int) -> int:
        """Examples one step trains on, for the throughput shown while training."""
        raise NotImplementedError

    def epoch_order(self, data, generator):
        """The order examples are visited in this epoch (None when there is none)."""
        return None

    def batch(self, data, order, step: int, batch_size: int, generator, channels_last: bool = False):
        """(inputs, targets, select): the model is called as ``model(*inputs)`` and the loss taken on
        ``out[select]`` against ``targets`` (``select`` None: every output)."""
        raise NotImplementedError

    def evaluate(self, model, data, cfg: dict) -> dict[str, float]:
        """An epoch row's measured fields (``val_*``, ``test_*``; a task may refine ``train_acc``)."""
        raise NotImplementedError

    def evaluate_test(self, model, data, cfg: dict) -> dict[str, float]:
        """The independent re-evaluation of trained weights (``eval.json``)."""
        raise NotImplementedError

    def pruning_batches(self, payload: dict, info, opts: dict, generator, device):
        """A data-dependent pruning method's batch source: ``batches(n)`` yields n (inputs, targets)
        pairs; ``batches.per_epoch`` = how many make one pass over the training data."""
        raise NotImplementedError

    def example_input(self, info, batch: int = 1, dtype=None, fill: float | None = 1.0) -> tuple:
        """A forward input for a model of this kind (shape tracing, effective paths, statistics)."""
        raise NotImplementedError

    def data_shape(self, payload: dict) -> tuple:
        """The shape of the training inputs of a prepared payload (printed by prepare-data)."""
        raise NotImplementedError
