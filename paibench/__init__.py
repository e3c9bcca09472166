"""paibench: reproducible pruning-at-initialization benchmarks.

The public API (paibench.api): ``build_model``, ``make_mask``, ``load_mask``, ``apply_mask``. They are
imported on first use, so ``import paibench.config`` (the workflow's parse) stays light.
"""

__version__ = "0.1.0"
__all__ = ["build_model", "make_mask", "load_mask", "apply_mask"]


def __getattr__(name):
    if name in __all__:
        from paibench import api

        return getattr(api, name)
    raise AttributeError(f"module 'paibench' has no attribute {name!r}")
