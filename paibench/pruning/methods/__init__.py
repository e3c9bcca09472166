"""Pruning-method registry: adding a method is one module with a ``MethodSpec`` plus one line below."""

from __future__ import annotations

from paibench.pruning.core import MethodSpec
from paibench.pruning.methods import basic
from paibench.registry import Registry

METHODS: Registry[MethodSpec] = Registry("method")
METHODS.add("dense", basic.DENSE)
METHODS.add("random", basic.RANDOM)
METHODS.add("erk", basic.ERK)
