"""Tasks: one module per kind of data (``DatasetInfo.kind`` = ``ArchSpec.kind``), holding everything that
differs between kinds -- the data on the device, pruning batches, a model's example input, one training
batch, and evaluation -- so training, pruning and statistics have no image/graph branches.

A new kind (e.g. graph classification) is one module with a ``Task`` plus one registry line below.
"""

from __future__ import annotations

from paibench.registry import Registry
from paibench.tasks.base import Task
from paibench.tasks.image import IMAGE_CLASSIFICATION
from paibench.tasks.node import NODE_CLASSIFICATION

TASKS: Registry[Task] = Registry("task kind", group="paibench.tasks", item_type=Task)
TASKS.add("image", IMAGE_CLASSIFICATION)
TASKS.add("graph", NODE_CLASSIFICATION)


def task_for(kind: str) -> Task:
    return TASKS.get(kind)


__all__ = ["TASKS", "Task", "task_for"]
