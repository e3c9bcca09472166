"""Deferred imports, so that reading a config (Snakemake's parse of every workflow, `paibench check-config`,
`paibench list`) never pays for torch.

Modules whose *declarations* a config needs (the option tables of methods, architectures and datasets)
but whose *work* needs torch import it as ``from paibench.lazy import torch`` (likewise ``nn``, ``F``):
the real module is imported on the first attribute access, i.e. when a function actually runs. Module
level code of such modules must therefore not touch these names (no ``class X(nn.Module)`` or
``torch.float32`` default at import time); model classes live in modules that are only imported when a
model is built (``Ref``).
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """A stand-in for a module that imports it on first attribute access."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_lazy_name"] = name

    def _load(self) -> types.ModuleType:
        module = importlib.import_module(self.__dict__["_lazy_name"])
        self.__dict__.update({k: v for k, v in module.__dict__.items() if k not in ("__name__", "__spec__")})
        self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, attr: str) -> Any:
        module = self.__dict__.get("_lazy_module") or self._load()
        return getattr(module, attr)


torch = LazyModule("torch")
nn = LazyModule("torch.nn")
F = LazyModule("torch.nn.functional")


class Ref:
    """A callable named by ``module:attribute`` (and optional arguments of that attribute, for factories),
    imported on the first call: ``Ref("paibench.models.vgg:builder", "vgg16")(info, width)``."""

    def __init__(self, target: str, *args: Any):
        self.target, self.args = target, args
        self._resolved = None

    def resolve(self):
        if self._resolved is None:
            module_name, _, attr = self.target.partition(":")
            obj = getattr(importlib.import_module(module_name), attr)
            self._resolved = obj(*self.args) if self.args else obj
        return self._resolved

    def __call__(self, *args: Any, **kwargs: Any):
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Ref({self.target!r}{''.join(', ' + repr(a) for a in self.args)})"
