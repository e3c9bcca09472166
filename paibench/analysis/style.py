"""How methods, architectures and datasets look in figures and tables: display names, one colour and one
marker per method in every figure of every experiment, and compressions written as papers write them.

Colours follow the method (its registry name), markers the budget a MiCA/RPI variant takes or, for other
variants of one method, a stable hash of the label — never the order in which methods happen to appear, so
MiCA has the same colour in every figure. No torch import here (tables and figures stay light).
"""

from __future__ import annotations

import hashlib
import json
import math
import re

from paibench.names import DENSE

# Display names of the built-in entries; a plug-in's name is shown as it is.
METHOD_NAMES = {
    DENSE: "Dense", "random": "Random", "er": "ER", "erk": "ERK", "igq": "IGQ", "magnitude": "Magnitude",
    "snip": "SNIP", "grasp": "GraSP", "synflow": "SynFlow", "iter_snip": "Iterative SNIP", "force": "FORCE",
    "mica": "MiCA", "rpi": "RPI", "xnet": "X-Net", "rreg": "RReg", "random_graph": "Random graph",
}
ARCH_NAMES = {
    "vgg11": "VGG-11", "vgg13": "VGG-13", "vgg16": "VGG-16", "vgg19": "VGG-19", "vgg19_force": "VGG-19 (FORCE)",
    "vgg16_rreg": "VGG-16 (RReg)", "resnet20": "ResNet-20", "resnet32": "ResNet-32", "resnet44": "ResNet-44",
    "resnet56": "ResNet-56", "resnet110": "ResNet-110", "resnet18": "ResNet-18", "resnet34": "ResNet-34",
    "resnet50": "ResNet-50", "resnet101": "ResNet-101", "resnet152": "ResNet-152", "wrn28_4": "WRN-28-4",
    "wrn28_10": "WRN-28-10", "wrn40_14": "WRN-40-14", "mobilenetv2": "MobileNetV2", "gcn": "GCN", "gin": "GIN",
}
DATASET_NAMES = {
    "digits": "digits", "sbm": "SBM graph", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
    "tinyimagenet": "Tiny-ImageNet", "cora": "Cora", "citeseer": "CiteSeer", "ogbn-arxiv": "OGBN-ArXiv",
}

# Colour-blind-safe colours (seaborn's "colorblind" palette), fixed per method.
_COLORS = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
           "#56b4e9"]
METHOD_COLORS = {
    "random": "#949494", "er": "#ca9161", "erk": "#56b4e9", "igq": "#fbafe4", "magnitude": "#ece133",
    "snip": "#029e73", "grasp": "#cc78bc", "synflow": "#d55e00", "iter_snip": "#0173b2", "force": "#de8f05",
    "mica": "#de8f05", "rpi": "#0173b2", "xnet": "#029e73", "rreg": "#d55e00", "random_graph": "#949494",
    DENSE: "#333333",
}
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*"]
BUDGET_MARKERS = {"erk": "o", "igq": "s", "snip": "^", "grasp": "D", "synflow": "v", "er": "P", "random": "X",
                  "iter_snip": "<", "force": ">"}
# Methods drawn dashed, so that a line hidden under another of the same colour family stays visible.
_DASHED = {"rpi", "iter_snip", "random_graph", "er", "igq"}


def _stable_index(text: str, n: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % n


def method_color(method_name: str) -> str:
    return METHOD_COLORS.get(method_name) or _COLORS[_stable_index(method_name, len(_COLORS))]


def _options(options) -> dict:
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            return {}
    return options if isinstance(options, dict) else {}


def method_style(label: str, method_name: str, options=None) -> dict:
    """matplotlib keywords (color, marker, linestyle) for one method setting, the same in every figure."""
    opts = _options(options)
    budget = opts.get("budget")
    if budget in BUDGET_MARKERS:
        marker = BUDGET_MARKERS[budget]
    elif label == method_name:
        marker = "o"
    else:
        marker = _MARKERS[_stable_index(label, len(_MARKERS))]
    return {"color": method_color(method_name), "marker": marker,
            "linestyle": "--" if method_name in _DASHED else "-"}


def method_display(label: str, method_name: str, options=None) -> str:
    """'MiCA (ERK budget)', 'RPI (ERK budget, effective)', 'SNIP (score_mode=eval)'; a label the user chose
    (one not made from the method's name) is shown as written."""
    if not label.startswith(method_name):
        return label
    opts = _options(options)
    rest = label[len(method_name):]
    flags = []
    for suffix, text in (("_mica", "MiCA rule"), ("_effective", "effective")):  # config._method appends these last
        if rest.endswith(suffix):
            rest, flags = rest[: -len(suffix)], [text] + flags
    extras = []
    keys = sorted(set(opts) | {"from"}, key=len, reverse=True)  # the options the label may name, longest first
    pieces = re.split("_(" + "|".join(map(re.escape, keys)) + ")=", rest) if rest else [""]
    for key, value in zip(pieces[1::2], pieces[2::2]):
        if key == "budget":
            extras.append(f"{METHOD_NAMES.get(value, value)} budget")
        elif key == "from":
            extras.append(f"budget from {value}")
        else:
            extras.append(f"{key}={value}")
    if pieces[0]:  # a label that only starts like the method's name
        return label
    extras += flags
    return METHOD_NAMES.get(method_name, method_name) + (f" ({', '.join(extras)})" if extras else "")


def arch_display(label: str, arch_name: str, options=None) -> str:
    """'VGG-16', 'VGG-16, width 0.25', 'GCN, hidden 64': the width and options the label names (the ones
    the config set); a label the user chose is shown as written."""
    if not label.startswith(arch_name):
        return label
    rest = label[len(arch_name):]
    parts = [ARCH_NAMES.get(arch_name, arch_name)]
    width = re.match(r"_w([0-9.e+-]+)(?=_|$)", rest)
    if width:
        parts.append(f"width {width.group(1)}")
        rest = rest[width.end():]
    keys = sorted(_options(options), key=len, reverse=True)
    pieces = re.split("_(" + "|".join(map(re.escape, keys)) + ")=", rest) if rest and keys else [rest]
    if pieces[0]:
        return label
    parts += [f"{k} {v}" for k, v in zip(pieces[1::2], pieces[2::2])]
    return ", ".join(parts)


def dataset_display(label: str) -> str:
    return DATASET_NAMES.get(label, label)


def compression_text(value: float) -> str:
    """Plain text: '10×', '1,995×', '10^4.7×' (a power of ten with one decimal from 1000 on)."""
    if not math.isfinite(value):
        return "∞"
    exp = math.log10(value) if value > 0 else 0.0
    if value >= 1000 and abs(exp * 10 - round(exp * 10)) < 1e-3:
        return f"10^{round(exp, 1):g}×"
    return f"{value:,.4g}×"


def compression_tex(value: float) -> str:
    """LaTeX: '$10\\times$', '$1{,}995\\times$', '$10^{4.7}\\times$' (as the MiCA paper writes its axis)."""
    if not math.isfinite(value):
        return r"$\infty$"
    exp = math.log10(value) if value > 0 else 0.0
    if value >= 1000 and abs(exp * 10 - round(exp * 10)) < 1e-3:
        return rf"$10^{{{round(exp, 1):g}}}\times$"
    return "$" + f"{value:,.4g}".replace(",", "{,}") + r"\times$"
