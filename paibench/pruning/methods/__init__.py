"""Pruning-method registry: adding a method is one module with a ``MethodSpec`` plus one line below."""

from __future__ import annotations

from paibench.pruning.core import MethodSpec
from paibench.pruning.methods import basic
from paibench.pruning.methods import budgets, iterative, saliency
from paibench.pruning.methods import expanders, mica
from paibench.names import DENSE
from paibench.registry import Registry

METHODS: Registry[MethodSpec] = Registry("method", group="paibench.methods", item_type=MethodSpec)
METHODS.add(DENSE, basic.DENSE)
METHODS.add("random", basic.RANDOM)
METHODS.add("erk", basic.ERK)
METHODS.add("er", budgets.ER)
METHODS.add("igq", budgets.IGQ)
METHODS.add("magnitude", saliency.MAGNITUDE)
METHODS.add("snip", saliency.SNIP)
METHODS.add("grasp", saliency.GRASP)
METHODS.add("synflow", saliency.SYNFLOW)
METHODS.add("iter_snip", iterative.ITER_SNIP)
METHODS.add("force", iterative.FORCE)
METHODS.add("mica", mica.MICA)
METHODS.add("rpi", mica.RPI)
METHODS.add("xnet", expanders.XNET)
METHODS.add("rreg", expanders.RREG)
METHODS.add("random_graph", expanders.RANDOM_GRAPH)
