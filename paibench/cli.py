"""The ``paibench`` command line: every workflow rule is one call of one subcommand."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import shlex
import sys
import time
from pathlib import Path

from paibench import paths
from paibench.errors import PaibenchError
from paibench.inputs import input_file, output_dir, output_file, read_json_input
from paibench.names import DEFAULT_PACK_MODE, PACK_MODES
from paibench.options import parse_kv_list
from paibench.utils import sha256_file


def _number_type(cast, noun: str, expected: str, ok):
    """An argparse type: `cast` the text, then check it with `ok`; both failures say what is expected."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}; expected {expected}") from None
        if not math.isfinite(value) or not ok(value):  # NaN passes no comparison: refuse it explicitly
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected {expected}")
        return value
    return parse


def _device(text: str) -> str:
    if re.fullmatch(r"cpu|cuda(:\d+)?|auto", text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected cpu, cuda, cuda:N or auto")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paibench")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


_compression = _number_type(float, "a number", "a finite ratio >= 1 such as 100 or 1e3 (1: dense only)", lambda v: v >= 1)
_nonneg_int = _number_type(int, "an integer", "an integer >= 0", lambda v: v >= 0)
_positive_float = _number_type(float, "a number", "a number > 0", lambda v: v > 0)


def cmd_mask(args) -> int:
    _make_one_mask(args, {})
    return 0


def _check_mask_args(args) -> None:
    """Names, options and files of one mask, checked before any work (errors name the flag the user typed)."""
    from paibench.data import DATASETS
    from paibench.models import ARCHS
    from paibench.pruning.methods import METHODS

    for flag, registry, name in (("--dataset", DATASETS, args.dataset), ("--arch", ARCHS, args.arch),
                                 ("--method", METHODS, args.method)):
        registry.get(name, flag)
    ARCHS.get(args.arch).parse_options(parse_kv_list(args.arch_opt, "--arch-opt"), "--arch-opt")
    METHODS.get(args.method).parse_options(parse_kv_list(args.opt, "--opt"), "--opt")
    if args.data:
        input_file("--data", args.data, "data")
    output_file("--out", args.out, inputs=[args.data], suffix=".safetensors")
    _refuse_other_mask(args)


def _make_one_mask(args, payloads: dict) -> dict:
    """One `paibench mask` invocation; `payloads` caches prepared datasets by path (a batch reads each once)."""
    from paibench.data import load_prepared
    from paibench.pruning import make_mask

    _check_mask_args(args)
    if args.data and args.data not in payloads:
        payloads[args.data] = load_prepared(args.data)
    stats = make_mask(
        args.dataset, args.arch, args.method, args.compression, args.seed, args.out,
        options=parse_kv_list(args.opt, "--opt"), width=args.width,
        arch_options=parse_kv_list(args.arch_opt, "--arch-opt"), payload=payloads.get(args.data),
        device=args.device, recorded_spec=_json_arg("--spec", args.spec, None),
    )
    eff = stats["effective_compression"]
    print(f"{args.out}: kept {stats['kept']}/{stats['total']} (nominal {stats['nominal_compression']:.4g}x, "
          f"effective {'collapsed' if eff is None else f'{eff:.4g}x'}) in {stats['seconds']:.2f}s", flush=True)
    return stats


class _JobParser(_Parser):
    """Parses one --job of mask-batch with the `mask` command's arguments; a bad one names the job."""

    def __init__(self, where: str):
        super().__init__(prog=f"paibench mask-batch {where}", add_help=False)
        self.where = where

    def error(self, message: str):
        raise PaibenchError(f"{self.where}: {message}")


def cmd_mask_batch(args) -> int:
    jobs = list(args.job or [])
    if args.jobs_file:
        text = input_file("--jobs-file", args.jobs_file, "list").read_text()
        jobs += [line for line in text.splitlines() if line.strip()]
    if not jobs:
        raise PaibenchError("mask-batch: no jobs; expected --job 'ARGS OF paibench mask' (repeatable) or --jobs-file FILE")
    parsed = []
    for i, job in enumerate(jobs):  # every job is checked before the first mask is made
        parser = _JobParser(f"--job {i}")
        _add_mask_arguments(parser)
        try:
            parsed.append(parser.parse_args(shlex.split(job)))
        except ValueError as exc:  # shlex: an unclosed quote
            raise PaibenchError(f"--job {i}: {job[:60]!r} is not a command line ({exc}); expected the arguments "
                                f"of `paibench mask`") from None
        try:
            _check_mask_args(parsed[-1])
        except PaibenchError as exc:
            raise PaibenchError(f"--job {i}: {exc}") from None
    outs = [a.out for a in parsed]
    if len(set(outs)) != len(outs):
        dup = next(o for o in outs if outs.count(o) > 1)
        raise PaibenchError(f"--job: two jobs write {dup!r}; expected one job per mask file")
    payloads: dict = {}  # one read of each prepared dataset for the whole batch
    started = time.perf_counter()
    method_seconds = 0.0
    for i, job_args in enumerate(parsed):
        try:
            method_seconds += _make_one_mask(job_args, payloads)["seconds"]
        except PaibenchError as exc:
            raise PaibenchError(f"--job {i} ({job_args.out}): {exc}") from None
    print(f"{len(parsed)} masks in {time.perf_counter() - started:.2f}s ({method_seconds:.2f}s inside make_mask)")
    return 0


def _refuse_other_mask(args) -> None:
    """An existing mask made from other inputs is a finished result: replacing it needs --force."""
    from paibench.pruning.maskio import load_mask

    out = Path(args.out)
    if not out.exists() or args.force:
        return
    try:
        _, meta = load_mask(out)
    except PaibenchError:
        raise PaibenchError(f"--out: {args.out!r} exists and is not a readable paibench mask; expected a new path "
                            f"(or --force to replace it)") from None
    wanted = {"dataset": args.dataset, "arch": args.arch, "method": args.method, "seed": str(args.seed)}
    differs = [k for k, v in wanted.items() if meta.get(k) != v]
    if differs:
        raise PaibenchError(f"--out: {args.out!r} holds a mask of other inputs ({differs[0]} "
                            f"{meta.get(differs[0])!r}, not {wanted[differs[0]]!r}); expected a new path, or --force to replace it")


def cmd_inspect(args) -> int:
    from paibench.names import MAC_KEYS
    from paibench.pruning.maskio import stats_path

    path = Path(args.path)
    if path.suffix == ".json":
        stats = read_json_input("PATH", path, "stats")
    else:
        input_file("PATH", path, "mask")
        stats = None
        if stats_path(path).exists() and not args.recompute:
            try:
                stats = read_json_input("PATH", stats_path(path), "stats")
            except PaibenchError as exc:  # e.g. emptied by `inspect X.safetensors --json > X.json`
                print(f"paibench inspect: note: {exc}; recomputing from the mask", file=sys.stderr)
        stats = stats or _recompute(path)
    keys = ["total", "kept", "nominal_compression", "effective_kept", "effective_compression", "collapsed",
            "effective_kept_mica", "effective_compression_mica", "collapsed_mica", *MAC_KEYS]
    if args.json:
        print(json.dumps({k: stats.get(k) for k in keys + ["layers"]} | {k: v for k, v in stats.items() if k not in keys}, indent=2, sort_keys=True))
        return 0
    for k in keys:
        print(f"{k:22s} {stats.get(k)}")
    print("(effective: paibench's input-output paths; *_mica: the MiCA reference's rule, see README; "
          "macs: multiply-accumulates per example, dense / kept / effectively kept)")
    print(f"{'layer':40s} {'numel':>10s} {'kept':>10s} {'eff_kept':>10s} {'eff_mica':>10s} {'density':>8s} {'eff_dens':>8s} {'dead_in':>7s} {'dead_out':>8s}"
          f" {'expansion':>9s} {'gap':>6s}")
    for layer in stats["layers"]:
        # expansion / spectral gap exist only for channel-graph masks (constant over the kernel): "-" elsewhere
        exp_, gap = layer.get("expansion"), layer.get("spectral_gap")
        mica = layer.get("effective_kept_mica")
        print(f"{layer['name']:40s} {layer['numel']:10d} {layer['kept']:10d} {layer['effective_kept']:10d} "
              f"{'-' if mica is None else mica:>10} "
              f"{layer['density']:8.4f} {layer['effective_density']:8.4f} {layer.get('dead_inputs', 0):7d} {layer.get('dead_outputs', 0):8d}"
              f" {'-' if exp_ is None else f'{exp_:9.3f}':>9s} {'-' if gap is None else f'{gap:6.3f}':>6s}")
    return 0


def _recompute(path: Path) -> dict:
    """Statistics from the mask file alone (its metadata names the dataset and architecture)."""
    from paibench.models import build_model
    from paibench.pruning import resolve_info
    from paibench.pruning.maskio import load_mask
    from paibench.pruning.stats import mask_statistics

    masks, meta = load_mask(path)
    info = resolve_info(meta["dataset"], None)
    model = build_model(meta["arch"], info, float(meta["width"]), json.loads(meta.get("arch_options", "{}")))
    return mask_statistics(model, masks, info)


def cmd_prepare(args) -> int:
    from paibench.data import DATASETS, save_prepared
    from paibench.utils import write_json

    spec = DATASETS.get(args.dataset, "--dataset")
    options = spec.parse_options(parse_kv_list(args.opt, "--opt"), "--opt")
    spec.check(options, Path("."), "--opt")
    output_file("--out", args.out)
    output_dir("--raw-dir", args.raw_dir, inputs=[args.out])
    payload = spec.prepare(options, Path(args.raw_dir))
    save_prepared(payload, args.out)
    # What the file was prepared from, beside it: a workflow whose dataset options changed prepares it again.
    write_json(Path(args.out).with_suffix(".json"), {"dataset": args.dataset, "options": options})
    from paibench.tasks import task_for

    size = task_for(payload["kind"]).data_shape(payload)
    print(f"{args.out}: {payload['kind']} dataset {payload['name']} {size}, {payload['num_classes']} classes")
    return 0


def _json_arg(flag: str, text: str | None, default):
    """A JSON object given on the command line, or one line naming the flag."""
    if text is None:
        return default
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PaibenchError(f"{flag}: {text[:60]!r} is not valid JSON ({exc.msg}); expected a JSON object") from None
    if not isinstance(value, dict):
        raise PaibenchError(f"{flag}: {text[:60]!r} is not allowed; expected a JSON object")
    return value


def _check_run_files(data: str, mask: str, out_dir: str, checkpoint: str | None, flag_prefix: str = "") -> None:
    input_file(f"{flag_prefix}--data", data, "data")
    input_file(f"{flag_prefix}--mask", mask, "mask")
    output_dir(f"{flag_prefix}--out-dir", out_dir, inputs=[data, mask])
    if checkpoint:
        output_file(f"{flag_prefix}--checkpoint", checkpoint, inputs=[data, mask])


def content_run_key(mask: str, cfg: dict, dataset: str, arch: str, width: float, arch_options: dict, seed: int) -> str:
    """The run key (which seeds data order, augmentation and dropout) of a run trained without --run-key:
    what the run is -- mask content, dataset, architecture, seed and recipe -- never where its files go."""
    import hashlib

    from paibench.pruning.maskio import load_mask

    from paibench.training.recipe import result_recipe

    _, meta = load_mask(mask)
    recipe = result_recipe(cfg)  # logging options seed nothing
    what = json.dumps({"mask": meta.get("content_sha256") or sha256_file(mask), "dataset": dataset or meta.get("dataset"),
                       "arch": arch or meta.get("arch"), "width": width, "arch_options": arch_options, "seed": seed,
                       "train": recipe}, sort_keys=True)
    return f"direct/{hashlib.sha256(what.encode()).hexdigest()[:16]}/s{seed}"


def _refuse_other_run(out_dir: str, mask: str, force: bool) -> None:
    """A finished run in `out_dir` made with another mask is a result: replacing it needs --force."""

    metrics = Path(out_dir) / paths.METRICS
    if force or not metrics.exists():
        return
    try:
        recorded = json.loads(metrics.read_text()).get("mask_sha256")
    except (ValueError, AttributeError):
        recorded = None
    if recorded != sha256_file(mask):
        raise PaibenchError(f"--out-dir: {out_dir!r} holds a finished run of another mask; expected a new folder, "
                            f"or --force to replace it")


def cmd_train(args) -> int:
    from paibench.training import RunSpec, parse_train_config, train_run

    cfg = parse_train_config(_json_arg("--train-config", args.train_config, {}), "--train-config")
    _check_run_files(args.data, args.mask, args.out_dir, args.checkpoint)
    _refuse_other_run(args.out_dir, args.mask, args.force)
    spec = RunSpec(
        data=args.data, mask=args.mask, out_dir=args.out_dir,
        checkpoint=args.checkpoint or str(Path(args.out_dir) / paths.DIRECT_CHECKPOINT),
        run_key=args.run_key or content_run_key(args.mask, cfg, args.dataset, args.arch, args.width,
                                                parse_kv_list(args.arch_opt, "--arch-opt"), args.seed),
        train=cfg, dataset=args.dataset, arch=args.arch, width=args.width,
        arch_options=parse_kv_list(args.arch_opt, "--arch-opt"), seed=args.seed, threads=args.threads,
        spec=_json_arg("--spec", args.spec, None),
    )
    from paibench.gpu_slots import gpu_slot

    log = lambda msg: print(msg, flush=True)  # noqa: E731
    # Several local jobs on a multi-GPU machine: each claims its own GPU (no-op under SLURM or on CPU).
    slot = gpu_slot(log=log) if cfg["device"] != "cpu" else contextlib.nullcontext()
    with slot:
        metrics = train_run(spec, log=log)
    print(f"status={metrics['status']} accuracy={metrics['accuracy']}")
    if args.evaluate:
        _evaluate_saved(spec)
    return 0


def _evaluate_saved(spec) -> None:
    """`paibench evaluate` of a just-trained run, in the training process (no third process per run): the weights
    are reloaded from the run's saved files and measured on the CPU, exactly as the command does."""
    from paibench.training import evaluate_run

    out = Path(spec.out_dir)
    result = evaluate_run(spec.data, spec.mask, str(out / paths.MODEL), str(out / paths.METRICS), str(out / paths.EVAL),
                          "cpu")
    print(f"{out / paths.EVAL}: test_acc={result['test_acc']} pruned_nonzero={result['pruned_nonzero']}", flush=True)


def cmd_train_pack(args) -> int:
    from paibench.training import RunSpec, parse_train_config, train_pack

    cfg = parse_train_config(_json_arg("--train-config", args.train_config, {}), "--train-config")
    members = read_json_input("--manifest", args.manifest) if args.manifest else []
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise PaibenchError(f"--manifest: {args.manifest!r} is not allowed; expected a JSON list of member objects")
    members = members + [_json_arg("--member", text, {}) for text in args.member or []]
    if not members:
        raise PaibenchError("train-pack: no members; expected --member JSON (repeatable) or --manifest FILE")
    specs = []
    for i, m in enumerate(members):
        spec = RunSpec.from_member(m, cfg, f"--member {i}")  # the member JSON's one home: training/spec.py
        _check_run_files(spec.data, spec.mask, spec.out_dir, m.get("checkpoint"), f"--member {i} ")
        spec.run_key = spec.run_key or content_run_key(spec.mask, cfg, spec.dataset, spec.arch, spec.width,
                                                       spec.arch_options, spec.seed)
        spec.threads = args.threads
        specs.append(spec)
    results = train_pack(specs, log=lambda msg: print(msg, flush=True), mode=args.mode)
    for spec, metrics in zip(specs, results):
        print(f"{spec.run_key}: status={metrics['status']} accuracy={metrics['accuracy']}")
    if args.evaluate:
        for spec in specs:
            _evaluate_saved(spec)
    return 0


def cmd_evaluate(args) -> int:
    from paibench.training import evaluate_run

    input_file("--data", args.data, "data")
    input_file("--mask", args.mask, "mask")
    input_file("--model", args.model, "model")
    input_file("--metrics", args.metrics, "metrics")
    output_file("--out", args.out, inputs=[args.data, args.mask, args.model, args.metrics])
    result = evaluate_run(args.data, args.mask, args.model, args.metrics, args.out, args.device)
    print(json.dumps(result))
    return 0


def cmd_aggregate(args) -> int:
    from paibench.analysis.aggregate import collect, write_tables

    files = _listed_files(args)
    output_dir("--out-dir", args.out_dir, inputs=files)
    runs = collect(files)
    paths = write_tables(runs, args.out_dir)
    print(f"{len(runs)} runs -> {', '.join(map(str, paths.values()))}")
    return 0


EFFECTIVE_DEFINITION_ARG = dict(
    default="paths", choices=("paths", "mica"),
    help="effective compression shown: paths (paibench's input-output paths) or mica (the MiCA reference's rule)")


def cmd_plot(args) -> int:
    import pandas as pd

    from paibench.analysis.plots import accuracy_vs_compression

    input_file("--runs", args.runs, "csv")
    output_file("--out", args.out, inputs=[args.runs], suffix=".png")
    try:
        runs = pd.read_csv(args.runs)
    except (ValueError, pd.errors.ParserError) as exc:
        raise PaibenchError(f"--runs: {args.runs!r} is not a readable CSV ({exc}); expected runs.csv") from None
    missing = sorted({"method", "accuracy_pct", "compression", "collapsed", "nominal_compression",
                      "effective_compression"} - set(runs.columns))
    if missing:
        raise PaibenchError(f"--runs: {args.runs!r} lacks the columns {', '.join(missing)}; expected runs.csv "
                            f"(written by paibench aggregate)")
    for path in accuracy_vs_compression(runs, args.out, x=args.x):
        print(path)
    return 0


def _listed_files(args) -> list[str]:
    """The metrics files named on the command line and in --metrics-list, each checked; at least one."""
    files = list(args.metrics)
    if args.metrics_list:
        files += input_file("--metrics-list", args.metrics_list, "list").read_text().split()
    if not files:
        raise PaibenchError("METRICS: no metrics files were given; expected at least one metrics.json "
                            "(as arguments or in --metrics-list), so no table is replaced by an empty one")
    for f in files:
        input_file("METRICS", f, "metrics")
    return files


def cmd_figures(args) -> int:
    from paibench.analysis.figures import draw_experiment
    from paibench.analysis.results import load_layers, load_runs

    files = _listed_files(args)
    if not Path(args.masks_root).is_dir():
        raise PaibenchError(f"--masks-root: {args.masks_root!r} is not a folder; expected the folder holding the "
                            f"mask statistics (results/masks)")
    output_dir("--out-dir", args.out_dir, inputs=files)
    runs = load_runs(files, args.effective_definition)
    if args.experiment:
        runs = runs[runs["experiment"] == args.experiment] if not runs.empty else runs
    if runs.empty:
        raise PaibenchError(f"no metrics files of experiment {args.experiment!r} were given; expected at least one run")
    layers = load_layers(runs, args.masks_root, args.effective_definition)
    for path in draw_experiment(runs, layers, args.out_dir, args.profile_compression):
        print(path)
    return 0


def cmd_tables(args) -> int:
    from paibench.analysis.results import load_runs
    from paibench.analysis.tables import PAPERS, write_all

    papers: dict[str, list[str]] = {}
    for item in args.paper or []:
        name, _, experiments = item.partition("=")
        if name not in PAPERS:
            raise PaibenchError(f"--paper {item!r}: {name!r} is not allowed; expected one of {', '.join(PAPERS)}")
        papers[name] = [e for e in experiments.split(",") if e]
        if not papers[name]:
            raise PaibenchError(f"--paper {item!r}: no experiments; expected {name}=EXPERIMENT[,EXPERIMENT...]")
    files = _listed_files(args)
    output_dir("--out-dir", args.out_dir, inputs=files)
    runs = load_runs(files, args.effective_definition)
    for path in write_all(runs, args.out_dir, papers or None):
        print(path)
    return 0


def cmd_check_config(args) -> int:
    from paibench.config import Grid, load_config_file

    from paibench.estimate import describe, grid_size

    input_file("CONFIG", args.config, "config")
    grid = Grid(load_config_file(args.config), base_dir=args.base_dir)
    print(f"{args.config}: valid; {len(grid.runs)} runs in {len(grid.config['experiments'])} experiment(s)")
    for line in describe(grid_size(grid, compute=args.estimate)):
        print(line, file=sys.stderr if line.startswith("warning") else sys.stdout)
    return 0


def cmd_list(args) -> int:
    from paibench.data import DATASETS
    from paibench.models import ARCHS
    from paibench.pruning.methods import METHODS

    from paibench.pruning.core import COMMON_OPTIONS

    print("options every method takes:")
    for key, opt in COMMON_OPTIONS.items():
        print(f"  {key}={opt.default!r}  {opt.help}")
    print("options every architecture takes:\n  width=1.0  width multiplier of every layer (a config's archs[].width, "
          "--width on the command line)")
    for title, reg in (("datasets", DATASETS), ("archs", ARCHS), ("methods", METHODS)):
        print(f"{title}:")
        for name in reg.names():
            item = reg.get(name)
            opts = ", ".join(f"{k}={v.default!r}" for k, v in getattr(item, "options", {}).items())
            print(f"  {name:14s} {item.description}" + (f"  [options: {opts}]" if opts else ""))
    return 0


def _add_mask_arguments(m) -> None:
    m.add_argument("--dataset", required=True, help="registered dataset (paibench list); data-free methods need only its shape")
    m.add_argument("--arch", required=True, help="registered architecture (paibench list)")
    m.add_argument("--method", required=True, help="registered pruning method (paibench list)")
    m.add_argument("--compression", required=True, type=_compression, help="total prunable / kept, e.g. 100 or 1e3")
    m.add_argument("--seed", required=True, type=_nonneg_int, help="run seed: initial weights and the mask's randomness derive from it")
    m.add_argument("--out", required=True, help="mask file (.safetensors); statistics go to the same name with .json")
    m.add_argument("--opt", action="append", metavar="KEY=VALUE", help="method option (repeatable)")
    m.add_argument("--width", type=_positive_float, default=1.0, help="architecture width multiplier")
    m.add_argument("--arch-opt", action="append", metavar="KEY=VALUE", help="architecture option (repeatable)")
    m.add_argument("--data", help="prepared dataset file (needed by data-dependent methods and imagefolder)")
    m.add_argument("--device", default="cpu", type=_device, help="where scores are computed (cpu, cuda, cuda:N)")
    m.add_argument("--force", action="store_true", help="replace an existing mask made from other inputs")
    m.add_argument("--spec", help="what the workflow made this result from (JSON; recorded so a changed config is detected)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="paibench", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log more, and show the traceback of an unexpected error")
    p.add_argument("--version", action="version", version=f"paibench {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("mask", help="compute a pruning mask and its statistics")
    _add_mask_arguments(m)
    m.set_defaults(func=cmd_mask)

    mb = sub.add_parser("mask-batch", help="compute many masks in one process (the arguments of `paibench mask` per job)")
    mb.add_argument("--job", action="append", metavar="ARGS",
                    help="one mask: the arguments of `paibench mask` as one string (repeatable)")
    mb.add_argument("--jobs-file", help="file with one job (arguments of `paibench mask`) per line")
    mb.set_defaults(func=cmd_mask_batch)

    i = sub.add_parser("inspect", help="print a mask's (effective) compression and per-layer statistics")
    i.add_argument("path", help="a mask (.safetensors) or its statistics JSON")
    i.add_argument("--json", action="store_true", help="print the statistics as JSON")
    i.add_argument("--recompute", action="store_true", help="recompute from the mask file instead of reading its .json")
    i.set_defaults(func=cmd_inspect)

    d = sub.add_parser("prepare-data", help="turn a dataset into one cached tensor file")
    d.add_argument("--dataset", required=True, help="registered dataset (paibench list)")
    d.add_argument("--opt", action="append", metavar="KEY=VALUE", help="dataset option (repeatable)")
    d.add_argument("--out", required=True, help="prepared file to write (.pt); its options go beside it as .json")
    d.add_argument("--raw-dir", default=paths.RAW_DIR, help="where downloads and raw files are kept")
    d.set_defaults(func=cmd_prepare)

    t = sub.add_parser("train", help="train one masked run (resumes from its checkpoint)")
    t.add_argument("--data", required=True, help="prepared dataset file (paibench prepare-data)")
    t.add_argument("--mask", required=True, help="mask file (paibench mask)")
    t.add_argument("--out-dir", required=True, help="folder for metrics.json, epochs.csv and model.safetensors")
    t.add_argument("--checkpoint", help="checkpoint file (default: OUT_DIR/checkpoint.pt); a rerun resumes from it")
    t.add_argument("--run-key", help="seeds data order, augmentation and dropout (default: from the mask, data, arch, seed and recipe)")
    t.add_argument("--train-config", help="JSON object of training options")
    t.add_argument("--dataset", default="", help="dataset name recorded in the metrics (default: the mask's)")
    t.add_argument("--arch", default="", help="architecture (default: the mask's)")
    t.add_argument("--width", type=_positive_float, default=1.0, help="architecture width multiplier (the mask's)")
    t.add_argument("--arch-opt", action="append", metavar="KEY=VALUE", help="architecture option (repeatable)")
    t.add_argument("--seed", type=_nonneg_int, default=0, help="run seed (initial weights)")
    t.add_argument("--threads", type=_nonneg_int, default=0, help="CPU threads (0: all cores)")
    t.add_argument("--force", action="store_true", help="replace a finished run in --out-dir made with another mask")
    t.add_argument("--spec", help="what the workflow made this result from (JSON; recorded so a changed config is detected)")
    t.add_argument("--evaluate", action="store_true",
                   help="then write OUT_DIR/eval.json as `paibench evaluate` would (saves a process per run)")
    t.set_defaults(func=cmd_train)

    tp = sub.add_parser("train-pack", help="train several runs of one architecture together in one process")
    tp.add_argument("--member", action="append", metavar="JSON",
                    help='one run: {"data", "mask", "out_dir", "checkpoint", "run_key", "dataset", "arch", "width", '
                         '"arch_options", "seed"} (repeatable)')
    tp.add_argument("--manifest", help="JSON file with a list of member objects")
    tp.add_argument("--train-config", help="JSON object of training options (one recipe for the whole pack)")
    tp.add_argument("--threads", type=_nonneg_int, default=0, help="CPU threads (0: all cores)")
    tp.add_argument("--mode", default=DEFAULT_PACK_MODE, choices=PACK_MODES,
                    help="loop: interleaved, on the CPU bitwise equal to solo runs; vmap: one vectorised model (same "
                         "learning up to float summation order; faster for small image models); auto: vmap on CUDA, "
                         "else loop")
    tp.add_argument("--evaluate", action="store_true",
                    help="then write each member's eval.json as `paibench evaluate` would")
    tp.set_defaults(func=cmd_train_pack)

    e = sub.add_parser("evaluate", help="re-measure a trained run's test accuracy from its saved weights")
    e.add_argument("--data", required=True, help="prepared dataset file")
    e.add_argument("--mask", required=True, help="the run's mask file")
    e.add_argument("--model", required=True, help="the run's model.safetensors")
    e.add_argument("--metrics", required=True, help="the run's metrics.json")
    e.add_argument("--out", required=True, help="eval.json to write")
    e.add_argument("--device", default="cpu", type=_device, help="cpu, cuda, cuda:N or auto")
    e.set_defaults(func=cmd_evaluate)

    a = sub.add_parser("aggregate", help="collect metrics files into tables")
    a.add_argument("metrics", nargs="*", help="metrics.json files")
    a.add_argument("--metrics-list", help="file with one metrics.json path per line")
    a.add_argument("--out-dir", required=True, help="folder for runs.csv and summary.{csv,md}")
    a.set_defaults(func=cmd_aggregate)

    pl = sub.add_parser("plot", help="accuracy vs compression figure (PNG and PDF)")
    pl.add_argument("--runs", required=True, help="runs.csv (paibench aggregate)")
    pl.add_argument("--out", required=True, help="figure to write (.png; a .pdf beside it)")
    pl.add_argument("--x", default="compression", choices=("compression", "nominal_compression", "effective_compression"), help="x axis")
    pl.set_defaults(func=cmd_plot)

    fg = sub.add_parser("figures", help="the papers' figures of one experiment from cached metrics (PNG and PDF)")
    fg.add_argument("metrics", nargs="*", help="metrics.json files")
    fg.add_argument("--metrics-list", help="file with one metrics.json path per line")
    fg.add_argument("--experiment", help="only runs of this experiment")
    fg.add_argument("--masks-root", default=paths.MASKS_ROOT, help="where the mask statistics JSON files are")
    fg.add_argument("--profile-compression", type=_compression, help="compression of the per-layer density profile")
    fg.add_argument("--effective-definition", **EFFECTIVE_DEFINITION_ARG)
    fg.add_argument("--out-dir", required=True, help="folder for the figures (PNG and PDF)")
    fg.set_defaults(func=cmd_figures)

    tb = sub.add_parser("tables", help="the papers' main tables (CSV, Markdown, LaTeX) from cached metrics")
    tb.add_argument("metrics", nargs="*", help="metrics.json files")
    tb.add_argument("--metrics-list", help="file with one metrics.json path per line")
    tb.add_argument("--paper", action="append", metavar="PAPER=EXP1,EXP2", help="experiments of a paper's table")
    tb.add_argument("--effective-definition", **EFFECTIVE_DEFINITION_ARG)
    tb.add_argument("--out-dir", required=True, help="folder for <paper>.{csv,json,md,tex}")
    tb.set_defaults(func=cmd_tables)

    c = sub.add_parser("check-config", help="validate a workflow config without running anything")
    c.add_argument("config", help="workflow config (YAML)")
    c.add_argument("--base-dir", default=".", help="folder relative dataset paths are resolved against")
    c.add_argument("--estimate", action="store_true",
                   help="also estimate GPU-hours of training and CPU-hours of masks (builds each architecture on "
                        "torch's meta device; without it, checking a config imports no torch)")
    c.set_defaults(func=cmd_check_config)

    ls = sub.add_parser("list", help="list registered datasets, architectures and methods")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except PaibenchError as exc:
        print(f"paibench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`paibench inspect ... | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        # Last resort for a fault no check foresaw: still one line (the traceback with -v).
        if args.verbose:
            raise
        print(f"paibench {args.command}: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              f"(run with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
