"""Pruning: ``api`` (make_mask and what it is made of), ``core`` (MethodSpec, PruneContext, exact counts),
``methods`` (the registry), ``effective``, ``topology``, ``stats``, ``maskio``.

The package itself imports nothing heavy, so that the method registry (``paibench.pruning.methods``) can
be read without torch; the public functions of ``api`` are reached here on first use.
"""

from __future__ import annotations

_API = ("make_mask", "compute_masks", "resolve_info", "init_seed", "arch_key", "dense_layer_names",
        "with_dense_layers", "pruning_batches")


def __getattr__(name: str):
    if name in _API:
        from paibench.pruning import api

        return getattr(api, name)
    raise AttributeError(f"module 'paibench.pruning' has no attribute {name!r}")


__all__ = list(_API)
