"""Workflow config: schema validation with one clear message, semantic checks, and the run grid.

The paths of a grid's files come from ``paibench.paths`` (prepared data, masks, run folders).
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from paibench.data import DATASETS
from paibench import paths
from paibench.errors import PaibenchError
from paibench.models import ARCHS
from paibench.pruning.methods import METHODS
from paibench.names import DEFAULT_PACK_MODE, PAPERS as PAPER_TITLES
from paibench.registry import is_import_name
from paibench.training import parse_train_config
from paibench.training.recipe import result_recipe
from paibench.utils import format_compression

if TYPE_CHECKING:
    from paibench.training.spec import RunSpec

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"  # shipped in the package (wheel too)
PAPERS = tuple(PAPER_TITLES)  # the papers whose main tables paibench rebuilds (analysis/tables.py)
DEFAULT_RESOURCES = {"train_threads": 1, "mask_threads": 1, "train_mem_mb": 4000, "train_runtime": 120,
                     "mask_batch": 25, "mask_mem_mb": 4000, "mask_runtime": 60}


def _path_text(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_schema(schema_path: str | Path | None = None) -> dict:
    schema = yaml.safe_load(Path(schema_path or SCHEMA_PATH).read_text())
    # Names come from the registries, so adding a method/arch/dataset never needs a schema edit.
    schema["$defs"]["dataset_name"]["enum"] = DATASETS.names()
    schema["$defs"]["arch_name"]["enum"] = ARCHS.names()
    schema["$defs"]["method_name"]["enum"] = METHODS.names()
    schema["$defs"]["paper_name"] = {"enum": list(PAPERS)}
    return schema


def _schema_error(config: dict, schema: dict) -> PaibenchError | None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(config))
    if not errors:
        return None
    error = jsonschema.exceptions.best_match(errors)
    # For "oneOf" failures the most useful message is the deepest one inside it.
    while error.context:
        error = jsonschema.exceptions.best_match(error.context)
    where = _path_text(error.absolute_path)
    message = error.message
    if error.validator == "enum":
        message = f"{error.instance!r} is not allowed; expected one of {', '.join(map(str, error.validator_value))}"
    elif error.validator == "additionalProperties" and error.validator_value is False:
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        message = f"unknown key {extra[0]!r} is not allowed; expected one of the keys {allowed}" if extra else \
            f"{message}; allowed keys: {allowed}"
    else:
        # jsonschema's wording names the value but not always what is allowed; say both in one phrase.
        value, limit = error.instance, error.validator_value
        expected = {
            "type": f"a {' or '.join(limit) if isinstance(limit, list) else limit}".replace("a object", "a mapping")
                    .replace("a array", "a list").replace("a integer", "an integer"),
            "minimum": f"a value >= {limit}", "exclusiveMinimum": f"a value > {limit}",
            "maximum": f"a value <= {limit}", "exclusiveMaximum": f"a value < {limit}",
            "minItems": "a non-empty list", "minProperties": "at least one entry",
            "uniqueItems": "each entry once", "pattern": "a name of letters, digits and _.=+- (no '/' or spaces)",
        }.get(error.validator)
        if expected:
            message = f"{value!r} is not allowed; expected {expected}"
        elif error.validator == "required":
            missing = next((k for k in limit if k not in value), limit[0])
            message = f"required key {missing!r} is missing; expected the keys {', '.join(limit)}"
    return PaibenchError(f"config error at {where}: {message}")


@dataclass(frozen=True)
class DatasetEntry:
    label: str
    type: str
    kind: str
    options: dict


@dataclass(frozen=True)
class ArchEntry:
    label: str
    name: str
    width: float
    options: dict


@dataclass(frozen=True)
class MethodEntry:
    label: str
    name: str
    options: dict
    budget_from: str | None = None  # method label whose mask (same dataset/arch/compression/seed) is budget_mask


mask_path = paths.mask  # (dataset, arch, method, compression label, seed) -> its mask file


@dataclass(frozen=True)
class Run:
    experiment: str
    dataset: str
    arch: str
    method: str
    compression: str
    seed: int

    @property
    def key(self) -> str:
        return paths.run_key(self.experiment, self.dataset, self.arch, self.method, self.compression, self.seed)

    @property
    def mask(self) -> str:
        return paths.mask(self.dataset, self.arch, self.method, self.compression, self.seed)

    @property
    def run_dir(self) -> str:
        return paths.run_dir(self.key)

    @property
    def checkpoint(self) -> str:
        return paths.checkpoint(self.key)

    @property
    def data(self) -> str:
        return paths.data(self.dataset)

    def file(self, name: str) -> str:
        """A file of the run's folder (paths.METRICS, EPOCHS, MODEL, EVAL)."""
        return paths.in_run(self.run_dir, name)


def _value_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def _base_label(name: str, spec) -> str:
    """A label's start: the name, or for a plug-in named module:attribute its spec's name (paths cannot hold ':')."""
    return spec.name if is_import_name(name) else name


def _config_error(get, name: str, where: str) -> None:
    try:
        get(name, where)
    except PaibenchError as exc:
        raise PaibenchError(f"config error at {exc}") from None


def _import_named_plugins(config: dict) -> None:
    """Import the plug-ins a config names as module:attribute (registry.py), so the schema's name lists
    include them; a name that does not import is refused here with its place in the config."""
    def entries(exp, key):
        items = exp.get(key) if isinstance(exp, dict) else None
        for i, item in enumerate(items if isinstance(items, list) else []):
            yield i, item.get("name") if isinstance(item, dict) else item

    experiments = config.get("experiments")
    for exp_name, exp in (experiments.items() if isinstance(experiments, dict) else []):
        for key, registry in (("archs", ARCHS), ("methods", METHODS)):
            for i, name in entries(exp, key):
                if is_import_name(name):
                    _config_error(registry.get, name, f"experiments.{exp_name}.{key}[{i}]")
    datasets = config.get("datasets")
    for label, entry in (datasets.items() if isinstance(datasets, dict) else []):
        dtype = entry.get("type") if isinstance(entry, dict) else None
        if is_import_name(dtype):
            _config_error(DATASETS.get, dtype, f"datasets.{label}.type")


class Grid:
    """The validated config as lookup tables (label -> entry) and the list of runs."""

    def __init__(self, config: dict, schema_path: str | Path | None = None, base_dir: str | Path = "."):
        config = _normalize(copy.deepcopy(dict(config)))
        _import_named_plugins(config)
        error = _schema_error(config, load_schema(schema_path))
        if error:
            raise error
        self.config = config
        self.base_dir = Path(base_dir)
        self.resources = {**DEFAULT_RESOURCES, **config.get("resources", {})}
        self.datasets: dict[str, DatasetEntry] = {}
        self.archs: dict[str, ArchEntry] = {}
        self.methods: dict[str, MethodEntry] = {}
        self.train: dict[str, dict] = {}
        self.pack: dict[str, int] = {}  # experiment -> pack size (1: every run is its own job)
        self.pack_mode: dict[str, str] = {}  # experiment -> how its packs train (names.PACK_MODES)
        self.papers: dict[str, list[str]] = {}  # experiment -> papers whose tables it feeds
        self.runs: list[Run] = []
        base_train = config.get("train", {})
        parse_train_config(base_train, "train")
        for exp_name, exp in config["experiments"].items():
            self._experiment(exp_name, exp, base_train)

    # ---------------------------------------------------------------------------------------------
    def _dataset(self, label: str, where: str) -> DatasetEntry:
        if label in self.datasets:
            return self.datasets[label]
        spec_raw = dict(self.config.get("datasets", {}).get(label, {}))
        dtype = spec_raw.pop("type", label)
        if dtype not in DATASETS:
            raise PaibenchError(f"config error at {where}: {label!r} is not allowed; expected a label defined under "
                                f"'datasets' or one of {', '.join(DATASETS.names())}")
        spec = DATASETS.get(dtype)
        options = spec.parse_options(spec_raw, f"datasets.{label}")
        try:
            spec.check(options, self.base_dir, f"datasets.{label}")  # the files' structure, before any job
        except PaibenchError as exc:
            raise PaibenchError(f"config error at {exc}") from None
        entry = DatasetEntry(label, dtype, spec.kind, options)
        self.datasets[label] = entry
        return entry

    def _arch(self, raw, where: str) -> ArchEntry:
        raw = {"name": raw} if isinstance(raw, str) else dict(raw)
        name, width, label = raw.pop("name"), float(raw.pop("width", 1.0)), raw.pop("label", None)
        options = ARCHS.get(name).parse_options(raw, where)
        label = label or _base_label(name, ARCHS.get(name)) + (f"_w{width:g}" if width != 1 else "") + "".join(
            f"_{k}={_value_text(v)}" for k, v in sorted(raw.items()))
        entry = ArchEntry(label, name, width, options)
        if self.archs.setdefault(label, entry) != entry:
            raise PaibenchError(f"config error at {where}: label {label!r} is used for two different architectures")
        return entry

    def _method(self, raw, where: str, mode: str | None, definition: str | None = None) -> MethodEntry:
        raw = {"name": raw} if isinstance(raw, str) else dict(raw)
        name, label, budget_from = raw.pop("name"), raw.pop("label", None), raw.pop("budget_from", None)
        prunes = METHODS.get(name).prunes
        if mode and prunes:
            raw.setdefault("compression_mode", mode)
        # the experiment's effective rule matters only where an effective count is used
        uses_effective = raw.get("compression_mode") == "effective" or raw.get("budget_counts") == "effective"
        if definition and prunes and uses_effective:
            raw.setdefault("effective_definition", definition)
        spec = METHODS.get(name)
        if budget_from is not None:
            if "budget_mask" not in spec.options:
                raise PaibenchError(f"config error at {where}.budget_from: {budget_from!r} is not allowed for method "
                                    f"{name!r}; expected it only on methods with a budget_mask option (mica, rpi)")
            raw["budget_mask"] = "from:" + budget_from  # placeholder; the rule passes the real file
        options = spec.parse_options(raw, where)
        hidden = ("compression_mode", "effective_definition", "budget_mask")
        shown = {k: v for k, v in raw.items() if k not in hidden}
        label = label or _base_label(name, spec) + "".join(f"_{k}={_value_text(v)}" for k, v in sorted(shown.items())) + (
            f"_from={budget_from}" if budget_from else "") + (
            "_effective" if raw.get("compression_mode") == "effective" else "") + (
            f"_{raw['effective_definition']}" if raw.get("effective_definition", "paths") != "paths" else "")
        options.pop("budget_mask", None) if budget_from else None
        entry = MethodEntry(label, name, options, budget_from)
        if self.methods.setdefault(label, entry) != entry:
            raise PaibenchError(f"config error at {where}: label {label!r} is used for two different method settings")
        return entry

    def _experiment(self, name: str, exp: dict, base_train: dict) -> None:
        where = f"experiments.{name}"
        datasets = [self._dataset(d, f"{where}.datasets[{i}]") for i, d in enumerate(exp["datasets"])]
        archs = [self._arch(a, f"{where}.archs[{i}]") for i, a in enumerate(exp["archs"])]
        methods = [self._method(m, f"{where}.methods[{i}]", exp.get("compression_mode"), exp.get("effective_definition"))
                   for i, m in enumerate(exp["methods"])]
        labels = {m.label for m in methods}
        for i, m in enumerate(methods):
            if m.budget_from is not None and m.budget_from not in labels:
                raise PaibenchError(f"config error at {where}.methods[{i}].budget_from: {m.budget_from!r} is not allowed; "
                                    f"expected the label of another method of this experiment: {', '.join(sorted(labels))}")
        for kind, entries in (("archs", archs), ("methods", methods)):
            labels = [e.label for e in entries]
            dup = next((lbl for lbl in labels if labels.count(lbl) > 1), None)
            if dup:
                raise PaibenchError(f"config error at {where}.{kind}: {dup!r} appears twice; expected each entry once")
        comps = [format_compression(c) for c in exp["compressions"]]
        for c, text in zip(exp["compressions"], comps):
            if text == "1":  # the dense run's label: the two would share files
                raise PaibenchError(f"config error at {where}.compressions: {c!r} is not allowed; it rounds to the "
                                    f"label c1 of the dense run; expected a ratio that differs from 1 within 6 digits")
        if len(set(comps)) != len(comps):
            raise PaibenchError(f"config error at {where}.compressions: {exp['compressions']} has values that are equal "
                                f"to 6 significant digits; expected distinct ratios")
        for d in datasets:
            for i, a in enumerate(archs):
                kind = ARCHS.get(a.name).kind
                if kind != d.kind:
                    raise PaibenchError(f"config error at {where}.archs[{i}]: {a.name!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} model and "
                                        f"cannot run on the {d.kind} dataset {d.label!r}; expected one of "
                                        f"{', '.join(n for n in ARCHS.names() if ARCHS.get(n).kind == d.kind)}")
        self._check_degrees(where, datasets, archs, methods)
        self.train[name] = parse_train_config({**base_train, **exp.get("train", {})}, f"{where}.train")
        self.pack[name] = int(exp.get("pack", self.config.get("pack", 1)))
        self.pack_mode[name] = exp.get("pack_mode", self.config.get("pack_mode", DEFAULT_PACK_MODE))
        paper = exp.get("paper", PAPERS)
        self.papers[name] = [paper] if isinstance(paper, str) else list(paper)
        for d in datasets:
            for a in archs:
                for m in methods:
                    for c in (comps if METHODS.get(m.name).prunes else ["1"]):
                        for s in exp["seeds"]:
                            self.runs.append(Run(name, d.label, a.label, m.label, c, s))

    def _check_degrees(self, where: str, datasets, archs, methods) -> None:
        """A fixed expander degree that makes every layer dense would be a dense run under a compression label."""
        fixed = [(i, m) for i, m in enumerate(methods) if int(m.options.get("degree", 0) or 0) > 0]
        if not fixed:
            return
        import torch

        from paibench.models import build_model, prunable_parameters

        for d in datasets:
            spec = DATASETS.get(d.type)
            if spec.info is None:
                continue  # shape known only from the data (imagefolder): `paibench mask` checks it
            for a in archs:
                with torch.device("meta"):  # shapes only: no memory, no initialisation cost
                    model = build_model(a.name, spec.info(d.options), a.width, a.options)
                shapes = [tuple(p.shape) for p in prunable_parameters(model).values()]
                for i, m in fixed:
                    picked = [s[0] if m.options.get("orientation") == "input" else min(s[0], s[1]) for s in shapes]
                    if m.options["degree"] >= max(picked):
                        raise PaibenchError(
                            f"config error at {where}.methods[{i}].degree: {m.options['degree']!r} is not allowed "
                            f"for {a.label} on {d.label}: it makes every layer dense; expected a degree below "
                            f"{max(picked)}")

    # ------------------------------------------------------------------------------- lookups for rules
    def dataset_args(self, label: str) -> list[str]:
        e = self.datasets[label]
        return ["--dataset", e.type] + [x for k, v in sorted(e.options.items()) if v not in (None, "")
                                        for x in ("--opt", f"{k}={_value_text(v)}")]

    def arch_args(self, label: str) -> list[str]:
        e = self.archs[label]
        return ["--arch", e.name, "--width", f"{e.width:g}"] + [
            x for k, v in sorted(e.options.items()) for x in ("--arch-opt", f"{k}={_value_text(v)}")]

    def method_args(self, label: str) -> list[str]:
        e = self.methods[label]
        return ["--method", e.name] + [x for k, v in sorted(e.options.items()) if v is not None
                                       for x in ("--opt", f"{k}={_value_text(v)}")]

    def packs(self, done) -> list[list[Run]]:
        """Training jobs for packed experiments: unfinished runs (``done(run)`` false) of one experiment,
        dataset and architecture in chunks of ``pack``, in grid order. Finished runs get no job at all (their
        files are kept as they are), so adding a seed or a ratio never puts a finished run back into a job."""
        groups: dict[tuple, list[Run]] = {}
        out: list[list[Run]] = []
        for run in self.runs:
            if self.pack.get(run.experiment, 1) <= 1:
                continue
            if not done(run):
                groups.setdefault((run.experiment, run.dataset, run.arch), []).append(run)
        for (exp, _, _), runs in groups.items():
            size = self.pack[exp]
            out += [runs[i : i + size] for i in range(0, len(runs), size)]
        return out

    def mask_batches(self, todo: set[str], size: int, parallel: int = 1, work_s=None,
                     budget_s: float = math.inf) -> list[list[Run]]:
        """Mask jobs of several masks each, for the mask files in ``todo`` (one run per mask, grid order). A
        ``budget_from`` mask reads another mask of the grid, so masks come in levels (a level reads only masks of
        lower levels) and a batch holds one level. Each level is cut into chunks of at most ``size`` and into at
        least ``parallel`` chunks when it has that many masks, so local cores stay busy. With ``work_s(run)``
        (estimated seconds of a mask), a chunk also ends before its estimated work would pass ``budget_s``, so
        a batch of expensive masks (FORCE at T = 300 on a CPU takes minutes each) fits a cluster job's runtime."""
        levels: dict[int, dict[str, Run]] = {}
        for run in self.runs:
            if run.mask in todo:
                levels.setdefault(self._mask_level(run.method), {}).setdefault(run.mask, run)
        out: list[list[Run]] = []
        for level in sorted(levels):
            runs = list(levels[level].values())
            chunk_max = max(1, min(size, math.ceil(len(runs) / max(1, parallel))))
            chunk: list[Run] = []
            work = 0.0
            for run in runs:
                cost = work_s(run) if work_s else 0.0
                if chunk and (len(chunk) >= chunk_max or work + cost > budget_s):
                    out.append(chunk)
                    chunk, work = [], 0.0
                chunk.append(run)
                work += cost
            if chunk:
                out.append(chunk)
        return out

    def _mask_level(self, method_label: str) -> int:
        source = self.methods[method_label].budget_from
        return 0 if source is None else 1 + self._mask_level(source)

    def mask_args(self, run: Run) -> list[str]:
        """The arguments of `paibench mask` that make ``run``'s mask (the solo rule and mask batches share them)."""
        args = ["--dataset", self.datasets[run.dataset].type, *self.arch_args(run.arch), *self.method_args(run.method)]
        for budget in self.budget_mask(run.method, run.dataset, run.arch, run.compression, run.seed):
            args += ["--opt", f"budget_mask={budget}"]
        return args + ["--compression", run.compression, "--seed", str(run.seed), "--data", run.data,
                       "--spec", json.dumps(self.mask_spec(run), sort_keys=True), "--force", "--out", run.mask]

    def train_args(self, run: Run) -> list[str]:
        """The arguments of `paibench train` for ``run`` (threads aside: they are the job's), eval.json included."""
        return ["--data", run.data, "--mask", run.mask, "--dataset", self.datasets[run.dataset].type,
                *self.arch_args(run.arch), "--seed", str(run.seed),
                "--train-config", json.dumps(self.train[run.experiment], sort_keys=True),
                # outside the job's outputs, so Snakemake does not delete it when a killed job is cleaned up
                "--checkpoint", run.checkpoint, "--run-key", run.key,
                "--spec", json.dumps(self.run_spec(run), sort_keys=True), "--force", "--evaluate",
                "--out-dir", run.run_dir]

    def budget_mask(self, method_label: str, dataset: str, arch: str, compression: str, seed: int) -> list[str]:
        """The mask a ``budget_from`` method reads (a rule input), or [] for other methods."""
        source = self.methods[method_label].budget_from
        return [mask_path(dataset, arch, source, compression, seed)] if source else []

    # ------------------------------------------------------------------------ what produced a result
    def mask_spec(self, run: Run) -> dict:
        """Everything a mask file depends on (compared with what a cached mask recorded)."""
        d, a, m = self.datasets[run.dataset], self.archs[run.arch], self.methods[run.method]
        return {"dataset": {"type": d.type, "options": d.options},
                "arch": {"name": a.name, "width": a.width, "options": a.options},
                "method": {"name": m.name, "options": METHODS.get(m.name).recorded(m.options),
                           "budget_from": m.budget_from},
                "compression": run.compression, "seed": run.seed}

    def run_spec(self, run: Run) -> dict:
        """Everything a run's results depend on: its mask's spec and the training recipe."""
        train = result_recipe(self.train[run.experiment])
        return {**self.mask_spec(run), "train": train}

    def training_spec(self, run: Run) -> RunSpec:
        """What one training process needs for ``run`` (its files, architecture and spec; the recipe and threads
        are the job's): config.Run is a run's place in the grid, training.spec.RunSpec the job made from it."""
        from paibench.training.spec import RunSpec

        a = self.archs[run.arch]
        return RunSpec(data=run.data, mask=run.mask, out_dir=run.run_dir, checkpoint=run.checkpoint, run_key=run.key,
                       train={}, dataset=self.datasets[run.dataset].type, arch=a.name, width=a.width,
                       arch_options=a.options, seed=run.seed, spec=self.run_spec(run))

    def stale_data(self) -> dict[str, str]:
        """Prepared dataset files whose recorded dataset type or options differ from the config's."""
        out = {}
        for label, entry in self.datasets.items():
            sidecar = Path(paths.data_record(label))
            if sidecar.exists():
                why = _differs(_read(sidecar), {"dataset": entry.type, "options": entry.options})
                if why:
                    out[label] = why
        return out

    def stale(self) -> tuple[dict[str, str], dict[str, str]]:
        """Cached results that no longer match the config: ({run key: why}, {mask path: why}).

        A result records the spec it was made from (metrics.json / the mask's statistics JSON: "spec");
        results made before the spec was recorded are compared on the fields they carry.
        """
        runs, masks = {}, {}
        for run in self.runs:
            if run.mask not in masks:
                stats = paths.mask_stats(run.mask)
                if stats.exists():
                    why = _differs(_recorded_spec(stats, _legacy_mask_spec), self.mask_spec(run))
                    if why:
                        masks[run.mask] = why
            metrics = Path(run.file(paths.METRICS))
            if metrics.exists():
                why = masks.get(run.mask) or _differs(_recorded_spec(metrics, _legacy_run_spec), self.run_spec(run))
                if why:
                    runs[run.key] = why
        return runs, masks

    def uses_data(self, method_label: str) -> bool:
        entry = self.methods[method_label]
        return METHODS.get(entry.name).uses_data(entry.options)


def _read(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"unreadable": True}
    return value if isinstance(value, dict) else {"unreadable": True}


def _recorded_spec(path: Path, legacy) -> dict:
    """The spec a result file records, or for files made before specs were recorded, `legacy(data)`: the
    fields they carry (None = not recorded, so not compared)."""
    data = _read(path)
    if "unreadable" in data:
        return {"file": "unreadable"}
    return data["spec"] if "spec" in data else _present(legacy(data))


def _present(value):
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None}
    return value


def _legacy_mask_spec(st: dict) -> dict:
    return {"arch": {"name": st.get("arch"), "width": st.get("width"), "options": st.get("arch_options")},
            "method": {"name": st.get("method"), "options": st.get("options")}, "seed": st.get("seed")}


def _legacy_run_spec(m: dict) -> dict:
    train = result_recipe(m.get("train") or {})
    arch_options = m.get("arch_options") or {}
    if m.get("arch") in ARCHS:  # recorded as typed on the command line ('true', '0.5'): compare parsed values
        try:
            arch_options = ARCHS.get(m["arch"]).parse_options(arch_options, "arch_options")
        except PaibenchError:
            pass
    return {"arch": {"name": m.get("arch"), "width": m.get("width"), "options": arch_options},
            "method": {"name": m.get("method"), "options": m.get("method_options")},
            "seed": m.get("seed"), "train": train}


def _differs(recorded: dict, wanted: dict, where: str = "") -> str | None:
    """The first field (dotted path) where `recorded` differs from `wanted`, compared only on the fields
    `recorded` has (older results carry fewer); None when they agree."""
    if recorded.get("file") == "unreadable":
        return "its file is unreadable"
    for key, value in recorded.items():
        if key not in wanted:
            continue
        path = f"{where}.{key}" if where else key
        if isinstance(value, dict) and isinstance(wanted[key], dict):
            sub = _differs(value, wanted[key], path)
            if sub:
                return sub
        elif json.dumps(value, sort_keys=True) != json.dumps(wanted[key], sort_keys=True):
            return f"{path}: {value!r} -> {wanted[key]!r}"
    return None


class StrictLoader(yaml.SafeLoader):
    """YAML as a config needs it: a key given twice is an error (PyYAML keeps the last silently), and
    ``1e3`` is a number (YAML 1.2; PyYAML's YAML 1.1 resolver reads it as a string)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`; explicit keys may override it
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise PaibenchError(f"config error at line {key_node.start_mark.line + 1}: key {key!r} is given twice "
                                    f"(also at line {seen[key] + 1}); expected each key once")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_config_text(text: str, source: str) -> dict:
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except PaibenchError as exc:
        raise PaibenchError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise PaibenchError(f"config file {source}: not valid YAML ({str(exc).splitlines()[0]}); expected YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PaibenchError(f"config file {source}: {type(data).__name__} at the top level; expected a mapping of keys")
    return data


def load_config_file(path: str | Path) -> dict:
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise PaibenchError(f"config file {path}: not UTF-8 text; expected a YAML file") from None
    except OSError as exc:
        raise PaibenchError(f"config file {path}: {exc.strerror}; expected a readable YAML file") from None
    return load_config_text(text, str(path))


_EXPONENT = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$")


def _normalize(value, where: str = ""):
    """Numbers written as 1e3 become floats (Snakemake's YAML reads them as strings); a non-finite number,
    a label with whitespace or a control character is refused with its place in the config."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and (k != k.strip() or any(ch.isspace() or ord(ch) < 32 for ch in k)):
                raise PaibenchError(f"config error at {where or '(top level)'}: key {k!r} is not allowed; expected a "
                                    f"name without spaces, tabs or newlines")
            out[k] = _normalize(v, f"{where}.{k}" if where else str(k))
        return out
    if isinstance(value, list):
        return [_normalize(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and _EXPONENT.match(value):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise PaibenchError(f"config error at {where}: {value!r} is not allowed; expected a finite number")
    if isinstance(value, str) and any(ch in value for ch in "\n\r\t\x00"):
        raise PaibenchError(f"config error at {where}: {value!r} is not allowed; expected text without newlines or tabs")
    return value
