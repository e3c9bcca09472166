"""MiCA (Minimum Connection Assurance, TMLR 2024) and its baseline RPI, on top of any budget method.

Both take per-layer kept counts E_l from a registered *budget* method (its ``budget`` callable when it
has one, otherwise the per-layer counts of the mask it makes). ``rpi`` places them uniformly at random.
``mica`` follows the paper and its reference code (Hikari43/minimum_connection_assurance):

1. Backwards from the classes, decide how many output units V_out every layer must feed. The last
   layer feeds the classes; a layer with E edges, k kernel taps and consumers needing c units selects
   ``|V_out| = min(c, E, out_channels)`` and then uses ``in = min(x, in_channels)`` input channels, with
   x = floor(E / k) ('max'), ceil(E / |V_out|) ('min') or uniform in between ('rand', the paper's
   setting; it is also 'min' when ceil(E/|V_out|) > floor(E/k)). ``in`` is what the producing layers
   must feed; a layer feeding several consumers (residual additions) takes the maximum over them.
2. Forwards from the input, propagate reachability (padding-aware: a kernel tap is reachable only if
   it covers a reachable input somewhere, not just padding; a sum is the union of paths) and place each
   layer's E edges by priority: first a matching that gives every selected output unit one reachable
   input and every reachable input channel one edge into a selected output, then the rest of the
   V_out x reachable-input block, then any output from a reachable input, then anything — each tier in
   uniformly random order. The kept count per layer is exactly E_l.

Reference options (its ablations): ``v_out=ignore`` (a layer uses a uniform random number of input
channels in [1, in_channels], ``V_out_select: ignore``), ``only_v_in=true`` (only the reachable-input
priority, no output selection or matching: ``set_only_V_in``), and ``budget_mask=FILE`` (per-layer counts
read from another mask: its kept counts, or with ``budget_counts=effective`` its effective counts under
``effective_definition`` -- the reference's effective-compression protocol, which passes the RPI mask's
effective weights as ``--mask-file``). ``score_mode`` is handed to a data-dependent budget method.

The layer graph comes from ``paibench.pruning.topology`` (autograd, no per-arch code); its limits are
documented there. Grouped convolutions are not in the paper: their edges are placed at random over the
reachable taps and their ``in`` is all channels. As in the reference, hidden layers select their first
|V_out| units (so both branches of a residual addition select the same channels) and the layers
feeding the network output select theirs at random.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


from paibench.lazy import torch, nn  # imported when first used (no torch to read a config)
from paibench.errors import PaibenchError
from paibench.names import DENSE
from paibench.options import REQUIRED, Option
from paibench.pruning.core import MethodSpec, PruneContext, place_random
from paibench.pruning.topology import OUTPUT, input_reach, layer_graph

EXCLUDED_BUDGETS = (DENSE, "mica", "rpi")


class BudgetChoices(Sequence):
    """Registered method names usable as a budget, read from the registry when asked (not at import)."""

    def _names(self) -> list[str]:
        from paibench.pruning.methods import METHODS

        return [n for n in METHODS.names() if n not in EXCLUDED_BUDGETS]

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, value) -> bool:
        return value in self._names()

    def __repr__(self) -> str:
        return repr(self._names())


BUDGET_OPTION = Option(str, REQUIRED, choices=BudgetChoices(),
                       help="registered method whose per-layer kept counts are used")


def budget_spec(name: str):
    from paibench.pruning.methods import METHODS

    if name not in BudgetChoices():
        from paibench.errors import bad_value

        raise bad_value("--opt budget", name, list(BudgetChoices()))
    return METHODS.get(name)


def needs_data(options: dict) -> bool:
    """MiCA/RPI need the data exactly when their budget method does (never with a budget_mask)."""
    name = options.get("budget")
    if options.get("budget_mask"):
        return False
    return name is not None and name in BudgetChoices() and not budget_spec(name).data_free


FORWARDED = ("score_mode",)  # MiCA/RPI options handed to the budget method when it has them


def layer_budget(ctx: PruneContext) -> dict[str, int]:
    """Per-layer kept counts: of ``budget_mask`` when given, else of the budget method at ctx.compression
    (nominal, with its default options plus the forwarded ones)."""
    if ctx.options.get("budget_mask"):
        return mask_budget(ctx)
    spec = budget_spec(ctx.options["budget"])
    if not spec.data_free and ctx.batches is None:
        raise PaibenchError(f"--data: budget {spec.name!r} needs data; pass the prepared dataset file with --data")
    forwarded = {k: ctx.options[k] for k in FORWARDED if k in spec.options and k in ctx.options}
    sub = PruneContext(ctx.model, ctx.params, ctx.compression, ctx.generator, ctx.info,
                       spec.parse_options(forwarded, "--opt"), ctx.batches, ctx.device)
    if spec.budget is not None:
        counts = spec.budget(sub)
    else:
        counts = {n: int(m.sum()) for n, m in spec.fn(sub).items()}
    return {n: int(counts[n]) for n in ctx.params}


def mask_budget(ctx: PruneContext) -> dict[str, int]:
    """Per-layer counts of the mask file ``budget_mask`` (kept, or effective under effective_definition)."""
    from paibench.pruning.effective import effective_masks
    from paibench.pruning.maskio import load_mask

    path = ctx.options["budget_mask"]
    try:
        masks, _ = load_mask(path)
    except (OSError, PaibenchError) as exc:
        raise PaibenchError(f"--opt budget_mask: {path!r} is not a readable paibench mask ({exc})") from None
    params = ctx.network_params
    if set(masks) != set(params) or any(tuple(masks[n].shape) != tuple(p.shape) for n, p in params.items()):
        raise PaibenchError(f"--opt budget_mask: {path!r} does not fit this architecture (its layers or shapes "
                            f"differ); expected a mask made for the same dataset shape, arch and width")
    if ctx.options["budget_counts"] == "effective":
        masks, _ = effective_masks(ctx.model, masks, ctx.info, ctx.options["effective_definition"])
    return {n: int(masks[n].sum()) for n in ctx.params}


def _in_units(E: int, n_out: int, k: int, cin: int, select: str, gen: torch.Generator) -> int:
    """How many input channels a layer uses (reference ``get_num_out_channel``)."""
    if select == "ignore":  # the reference ignores the V_out range: uniform in [1, in_channels]
        return int(torch.randint(1, cin + 1, (1,), generator=gen))
    if n_out == 0:
        return 0
    lo, hi = math.ceil(E / n_out), E // k
    if lo <= hi:
        x = {"max": hi, "min": lo}.get(select)
        if x is None:
            x = int(torch.randint(lo, hi + 1, (1,), generator=gen))
    else:
        x = lo
    return min(x, cin)


def required_outputs(ctx: PruneContext, graph, counts: dict[str, int], select: str) -> dict[str, int]:
    """|V_out| per layer, computed backwards from the classes."""
    params = ctx.network_params
    in_units: dict[str, int] = {OUTPUT: graph.output_units}
    n_out: dict[str, int] = {}
    for name in reversed(graph.execution_order()):
        w = params[name]
        node = graph.layers[name]
        c = max((in_units.get(cons, 0) for cons in node.consumers), default=w.shape[0])
        n_out[name] = max(0, min(c, counts[name], w.shape[0]))
        k = math.prod(w.shape[2:]) if w.dim() > 2 else 1
        mod = _module_of(ctx.model, name)
        if isinstance(mod, nn.Conv2d) and mod.groups > 1:
            in_units[name] = w.shape[1] * mod.groups
        else:
            in_units[name] = _in_units(counts[name], n_out[name], k, w.shape[1], select, ctx.generator)
    return n_out


def _module_of(model: nn.Module, pname: str) -> nn.Module:
    return model.get_submodule(pname[: -len(".weight")] if pname.endswith(".weight") else "")


def mica_layer_mask(shape, reach: torch.Tensor, E: int, n_out: int, k: int, gen: torch.Generator,
                    shuffle_out: bool = True, only_v_in: bool = False) -> torch.Tensor:
    """Place exactly E edges in a (out, in*k) weight by MiCA's priority tiers (see module docstring).

    `only_v_in` (reference ``set_only_V_in``): reachable input taps first, then the rest, both random.
    """
    rows, cols = shape[0], math.prod(shape[1:])
    numel = rows * cols
    if E <= 0:
        return torch.zeros(shape, dtype=torch.bool)
    rand = torch.randperm(numel, generator=gen).view(rows, cols)
    v_in = torch.nonzero(reach).flatten()
    if len(v_in) == 0:  # nothing reachable: no structure to assure, plain random placement
        key = rand
    elif only_v_in:
        key = (~reach).long().unsqueeze(0) * numel + rand
    else:
        n_out = max(1, min(rows, E, n_out))
        # Hidden layers select the *first* n_out units, as the reference does: this aligns the units
        # selected by the two branches of a residual addition (and the identity it carries).
        v_out = torch.randperm(rows, generator=gen)[:n_out] if shuffle_out else torch.arange(n_out)
        sel = torch.zeros(rows, dtype=torch.bool)
        sel[v_out] = True
        tier = torch.full((rows, cols), 3, dtype=torch.int64)
        tier[:, reach] = 2
        tier[sel.unsqueeze(1) & reach.unsqueeze(0)] = 1
        key = tier * numel + rand
        # Tier 0: the matching. Reachable taps in random order, one tap per input channel first.
        perm = v_in[torch.randperm(len(v_in), generator=gen)]
        if k > 1:
            ch = perm // k
            order = torch.argsort(ch, stable=True)
            first = torch.ones(len(perm), dtype=torch.bool)
            first[1:] = ch[order][1:] != ch[order][:-1]
            is_first = torch.zeros(len(perm), dtype=torch.bool)
            is_first[order[first]] = True
            perm = torch.cat([perm[is_first], perm[~is_first]])
        ins, outs = perm, v_out
        if n_out > len(ins):
            extra = ins[torch.randint(len(ins), (n_out - len(ins),), generator=gen)]
            ins = torch.cat([ins, extra])
        elif n_out < len(ins):
            extra = outs[torch.randint(n_out, (len(ins) - n_out,), generator=gen)]
            outs = torch.cat([outs, extra])
        key[outs, ins] = torch.arange(len(ins)) - len(ins)  # negative: before every other tier
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.argsort(key.flatten())[:E]] = True
    return mask.view(shape)


def mica_masks(ctx: PruneContext, counts: dict[str, int], select: str = "rand",
               only_v_in: bool = False) -> dict[str, torch.Tensor]:
    """MiCA placement of `counts` on ctx.model (generic over architectures via forward hooks).

    `counts` covers every prunable weight of the network (ctx.network_params), dense_layers included.
    """
    from paibench.pruning.effective import _connectivity_model

    graph = layer_graph(ctx.model, ctx.info)
    n_out = required_outputs(ctx, graph, counts, select)
    ones = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in ctx.network_params.items()}
    net = _connectivity_model(ctx.model, ones)  # binarised forward: 1 = reachable unit
    masks: dict[str, torch.Tensor] = {}

    def place(name):
        def pre(mod, args):
            if name in masks:
                return
            w = mod.weight
            if isinstance(mod, nn.Conv2d) and mod.groups > 1:
                m = _random_over(w.shape, input_reach(mod, args[0]), counts[name], ctx.generator)
            else:
                k = math.prod(w.shape[2:]) if w.dim() > 2 else 1
                m = mica_layer_mask(w.shape, input_reach(mod, args[0]), counts[name], n_out[name], k, ctx.generator,
                                    shuffle_out=OUTPUT in graph.layers[name].consumers, only_v_in=only_v_in)
            masks[name] = m
            with torch.no_grad():
                w.copy_(m.to(w.dtype))
        return pre

    handles = [_module_of(net, name).register_forward_pre_hook(place(name)) for name in graph.execution_order()]
    from paibench.models.base import example_input

    try:
        with torch.no_grad():
            net(*example_input(ctx.info, batch=1, dtype=torch.float64))
    finally:
        for h in handles:
            h.remove()
    for name, p in ctx.network_params.items():  # a layer never called in forward: random placement
        if name not in masks:
            masks[name] = place_random({name: p}, counts, ctx.generator)[name]
    return {name: masks[name] for name in ctx.params}


def _random_over(shape, reach: torch.Tensor, E: int, gen: torch.Generator) -> torch.Tensor:
    """E edges, reachable taps first, random order (grouped convs)."""
    rows, cols = shape[0], math.prod(shape[1:])
    key = torch.randperm(rows * cols, generator=gen).view(rows, cols) + (~reach).long().unsqueeze(0) * rows * cols
    mask = torch.zeros(rows * cols, dtype=torch.bool)
    mask[torch.argsort(key.flatten())[:E]] = True
    return mask.view(shape)


def mica(ctx: PruneContext):
    counts = layer_budget(ctx)
    # Layers left dense (dense_layers) are placed whole; MiCA still plans their units with the rest.
    counts.update({n: p.numel() for n, p in ctx.network_params.items() if n not in ctx.params})
    return mica_masks(ctx, counts, ctx.options["v_out"], ctx.options["only_v_in"])


def rpi(ctx: PruneContext):
    return place_random(ctx.params, layer_budget(ctx), ctx.generator)


_BUDGET_OPTIONS = {
    "budget": BUDGET_OPTION,
    "budget_mask": Option(str, "", omit_default=True,
                          help="per-layer counts from this mask file instead of the budget method (reference --mask-file)"),
    "budget_counts": Option(str, "kept", choices=("kept", "effective"), omit_default=True,
                            help="budget_mask: its kept counts, or its effective counts under effective_definition"),
    "score_mode": Option(str, "train", choices=("train", "eval"), omit_default=True,
                         help="handed to a data-dependent budget method (snip, grasp, iter_snip, force)"),
}
MICA = MethodSpec("mica", mica, data_free=True, budget=None, needs_data=needs_data,
                  options={**_BUDGET_OPTIONS,
                           "v_out": Option(str, "rand", choices=("rand", "max", "min", "ignore"),
                                           help="how many input channels a layer uses (reference V_out_select)"),
                           "only_v_in": Option(bool, False, omit_default=True,
                                               help="only prefer reachable inputs; no output selection (reference set_only_V_in)")},
                  description="Minimum Connection Assurance placement of a budget method's per-layer counts")
RPI = MethodSpec("rpi", rpi, data_free=True, budget=None, needs_data=needs_data, options=_BUDGET_OPTIONS,
                 description="a budget method's per-layer counts placed uniformly at random")
