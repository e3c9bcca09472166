"""paibench: reproducible pruning-at-initialization benchmarks."""

__version__ = "0.1.0"
