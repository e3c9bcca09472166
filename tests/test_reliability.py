"""Reliability: resume after SIGKILL, determinism, integrity of masks/checkpoints, divergence, and the
safety of finished results when the grid is rerun, widened or shrunk.

Fast tests call paibench in-process on digits with VGG-16 at width 1/8; the end-to-end ones (marked slow)
start `paibench train` or Snakemake as subprocesses on tiny configs and are bounded by timeouts.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml

from conftest import BIN, REPO, run_snakemake
from paibench.cli import main
from paibench.errors import PaibenchError
from paibench.models import build_model
from paibench.pruning import make_mask
from paibench.pruning.maskio import load_mask, save_mask, stats_path
from paibench.training import RunSpec, check_mask, evaluate_run, parse_train_config, train_run
from paibench.utils import atomic_path, read_json, sha256_file, write_json

# Fields of metrics.json that describe the machine or the clock, not the result.
NOT_RESULTS = {"wall_time_s", "host", "command", "device", "torch", "python"}
ARCH = dict(arch="vgg16", width=0.125)


def _mask(tmp_path: Path, name: str = "m", method: str = "random", compression: float = 10, seed: int = 0,
          width: float = 0.125, arch: str = "vgg16", payload=None) -> Path:
    out = tmp_path / f"{name}.safetensors"
    make_mask("digits", arch, method, compression, seed, str(out), width=width, payload=payload)
    return out


def _spec(digits_file, mask, out_dir, run_key="t/digits/vgg16_w0.125/random/c10/s0", **train) -> RunSpec:
    cfg = parse_train_config({"epochs": 1, "batch_size": 128, "lr": 0.05, **train})
    return RunSpec(data=str(digits_file), mask=str(mask), out_dir=str(out_dir), checkpoint=str(Path(out_dir) / "ck.pt"),
                   run_key=run_key, train=cfg, dataset="digits", seed=0, threads=1, **ARCH)


def _epochs(path: Path) -> list[dict]:
    """epochs.csv without its timing column."""
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _results(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in NOT_RESULTS}


def _scramble_global_rng(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    torch.rand(seed % 7 + 1)  # also advance the streams by a different amount


# ------------------------------------------------------------------------------------------- integrity
def test_mask_statistics_record_the_files_sha256(tmp_path):
    mask = _mask(tmp_path)
    assert read_json(stats_path(mask))["sha256"] == sha256_file(mask)


def test_training_refuses_a_mask_whose_hash_does_not_match(tmp_path):
    mask = _mask(tmp_path)
    masks, meta = load_mask(mask)
    first = next(iter(masks))
    masks[first] = ~masks[first]  # a different mask under the same name, statistics left as they were
    save_mask(masks, mask, {k: v for k, v in meta.items() if k != "format"})
    model = build_model("vgg16", _digits_info(), 0.125, {})
    with pytest.raises(PaibenchError, match=r"sha256 .* differs .* recorded in .*corrupt or was replaced"):
        check_mask(masks, model, mask)


def test_training_refuses_a_mask_with_other_parameter_names(tmp_path):
    mask = _mask(tmp_path, arch="resnet20", width=0.25)
    masks, _ = load_mask(mask)
    model = build_model("vgg16", _digits_info(), 0.125, {})
    with pytest.raises(PaibenchError, match="parameter names do not match the architecture"):
        check_mask(masks, model, mask)


def test_training_refuses_a_mask_with_other_shapes(tmp_path):
    mask = _mask(tmp_path, width=0.25)
    masks, _ = load_mask(mask)
    model = build_model("vgg16", _digits_info(), 0.125, {})
    with pytest.raises(PaibenchError, match=r"has shape \(\d+, .*the architecture's weight has"):
        check_mask(masks, model, mask)


def test_train_command_reports_a_mismatched_mask_in_one_line(tmp_path, digits_file, capsys):
    mask = _mask(tmp_path, width=0.25)  # trained below as width 1/8
    code = main(["train", "--data", str(digits_file), "--mask", str(mask), "--out-dir", str(tmp_path / "run"),
                 "--dataset", "digits", "--arch", "vgg16", "--width", "0.125", "--train-config", '{"epochs": 1}'])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(mask) in err and "shape" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


class _Payload:
    """Unpickling this would create a file: a checkpoint must never be loaded with full pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_checkpoint_with_pickled_code_is_never_executed(tmp_path, digits_file):
    mask = _mask(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "executed"
    torch.save({"run_key": "x", "model": _Payload(str(marker))}, out / "ck.pt")
    logs: list[str] = []
    metrics = train_run(_spec(digits_file, mask, out), log=logs.append)
    assert not marker.exists()
    assert any("unreadable with weights_only=True" in line for line in logs)
    assert metrics["status"] == "ok" and metrics["epochs_run"] == 1


def test_checkpoint_of_another_run_is_ignored(tmp_path, digits_file):
    mask = _mask(tmp_path)
    out = tmp_path / "run"
    spec = _spec(digits_file, mask, out, epochs=1, keep_checkpoint=True)
    train_run(spec, log=lambda m: None)
    other = _spec(digits_file, mask, out, run_key="t/digits/vgg16_w0.125/random/c10/s1", epochs=2)
    logs: list[str] = []
    metrics = train_run(other, log=logs.append)
    assert any("belongs to another run" in line for line in logs)
    assert metrics["epochs_run"] == 2 and not any("resumed" in line for line in logs)


def test_checkpoint_of_another_mask_is_ignored(tmp_path, digits_file):
    """Same run key and recipe, but the mask was made again with other content (e.g. a changed method option)."""
    out = tmp_path / "run"
    train_run(_spec(digits_file, _mask(tmp_path), out, keep_checkpoint=True), log=lambda m: None)
    other_mask = _mask(tmp_path, compression=30)  # same file name, other content
    logs: list[str] = []
    metrics = train_run(_spec(digits_file, other_mask, out, epochs=1), log=logs.append)
    assert any("belongs to another run, recipe or mask" in line for line in logs)
    assert metrics["epochs_run"] == 1 and not any("resumed" in line for line in logs)


def test_model_and_checkpoint_files_load_with_weights_only(tmp_path, digits_file):
    mask = _mask(tmp_path)
    out = tmp_path / "run"
    train_run(_spec(digits_file, mask, out, keep_checkpoint=True), log=lambda m: None)
    state = torch.load(out / "ck.pt", weights_only=True)  # raises if anything but tensors/containers is inside
    assert state["epoch"] == 1 and state["run_key"].endswith("/s0")
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")
    masks, _ = load_mask(mask)
    for name, m in masks.items():
        assert torch.all(weights[name][~m] == 0)


def test_atomic_write_leaves_no_half_file_when_killed(tmp_path):
    target = tmp_path / "metrics.json"
    code = (
        "import os, signal, sys\n"
        "from paibench.utils import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('{\"half\": ')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()  # only a hidden .tmp may remain; the final name is never half-written
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("disk full")
    assert not target.exists() and list(tmp_path.glob(".metrics.json.*.tmp")) != []  # the killed one's
    write_json(target, {"ok": float("nan")})
    assert read_json(target) == {"ok": None}


# ----------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("method", ["random", "erk", "snip"])
def test_masks_do_not_depend_on_global_rng(tmp_path, method, digits_payload):
    files = []
    for i, seed in enumerate((1, 12345)):
        _scramble_global_rng(seed)
        files.append(_mask(tmp_path, f"m{i}", method=method, payload=digits_payload))
    assert files[0].read_bytes() == files[1].read_bytes()
    other = _mask(tmp_path, "other_seed", method=method, seed=1, payload=digits_payload)
    assert other.read_bytes() != files[0].read_bytes()  # the run's seed does matter


def test_training_does_not_depend_on_global_rng(tmp_path, digits_file):
    mask = _mask(tmp_path)
    results = []
    for i, seed in enumerate((3, 777)):
        _scramble_global_rng(seed)
        m = train_run(_spec(digits_file, mask, tmp_path / f"run{i}"), log=lambda msg: None)
        results.append((_results(m), _epochs(tmp_path / f"run{i}" / "epochs.csv"),
                        (tmp_path / f"run{i}" / "model.safetensors").read_bytes()))
    assert results[0] == results[1]


# ------------------------------------------------------------------------------------------ divergence
def _digits_info():
    from paibench.pruning import resolve_info

    return resolve_info("digits", None)


@pytest.fixture(scope="module")
def ok_and_diverged(tmp_path_factory, digits_file):
    """One finished run and one with lr=1e6 (its loss becomes NaN), laid out as the workflow does."""
    root = tmp_path_factory.mktemp("div")
    mask = _mask(root)
    runs = {}
    for name, lr in (("ok", 0.05), ("diverged", 1e6)):
        key = f"{name}/digits/vgg16_w0.125/random/c10/s0"
        out = root / "results" / "runs" / key
        runs[name] = (out, train_run(_spec(digits_file, mask, out, run_key=key, lr=lr, epochs=2), log=lambda m: None))
        evaluate_run(str(digits_file), str(mask), str(out / "model.safetensors"), str(out / "metrics.json"),
                     str(out / "eval.json"), device="cpu")
    return root, runs


def test_nan_loss_ends_with_status_diverged(ok_and_diverged):
    _, runs = ok_and_diverged
    out, metrics = runs["diverged"]
    assert metrics["status"] == "diverged" and runs["ok"][1]["status"] == "ok"
    assert metrics["accuracy"] is None and metrics["final_test_acc"] is None
    assert metrics["epochs_run"] == 1  # stopped at the first non-finite epoch instead of training on
    saved = read_json(out / "metrics.json")  # strict JSON: NaN became null
    assert saved["status"] == "diverged" and saved["accuracy"] is None
    assert _epochs(out / "epochs.csv")[-1]["status"] == "diverged"
    ev = read_json(out / "eval.json")
    assert ev["status"] == "diverged" and ev["test_acc"] is None


def test_tables_and_figure_show_diverged_runs(ok_and_diverged, tmp_path):
    from paibench.analysis.aggregate import collect, write_tables
    from paibench.analysis.plots import accuracy_vs_compression

    root, runs = ok_and_diverged
    table = collect([out / "metrics.json" for out, _ in runs.values()])
    assert list(table["status"]) == ["diverged", "ok"]
    paths = write_tables(table, tmp_path / "tables")
    summary = {row["experiment"]: row for row in csv.DictReader(open(paths["summary"]))}
    assert summary["diverged"]["diverged"] == "1" and summary["ok"]["diverged"] == "0"
    md = paths["markdown"].read_text().splitlines()
    assert any(line.startswith("| diverged |") and "| diverged |" in line[12:] for line in md)
    assert not any(line.startswith("| ok |") and "diverged" in line for line in md)
    written = accuracy_vs_compression(table, tmp_path / "fig.png")
    assert all(p.exists() and p.stat().st_size > 0 for p in written)


# ------------------------------------------------------------------------------ resume after SIGKILL
def _train_cmd(data, mask, out, ckpt, epochs=3):
    # checkpoint_interval_s 0: a checkpoint after every epoch, so the kill below lands after epoch 1's
    cfg = json.dumps({"epochs": epochs, "batch_size": 8, "lr": 0.05, "checkpoint_interval_s": 0})
    return [str(BIN / "paibench"), "train", "--data", str(data), "--mask", str(mask), "--out-dir", str(out),
            "--checkpoint", str(ckpt), "--run-key", "resume/digits/vgg16_w0.25/random/c10/s0", "--dataset", "digits",
            "--arch", "vgg16", "--width", "0.25", "--seed", "0", "--threads", "1", "--train-config", cfg]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"process ended (rc {proc.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.02)


@pytest.mark.workflow
def test_sigkill_mid_epoch_then_rerun_resumes_with_identical_metrics(tmp_path, digits_file):
    mask = _mask(tmp_path, width=0.25)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = tmp_path / "reference"
    subprocess.run(_train_cmd(digits_file, mask, ref, tmp_path / "ref.pt"), check=True, env=env, timeout=600,
                   capture_output=True)

    out, ckpt = tmp_path / "killed", tmp_path / "checkpoints" / "killed.pt"
    proc = subprocess.Popen(_train_cmd(digits_file, mask, out, ckpt), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for(ckpt, proc)  # epoch 1 is done and epoch 2 has just started
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= done < 3

    rerun = subprocess.run(_train_cmd(digits_file, mask, out, ckpt), env=env, timeout=600, capture_output=True,
                           text=True, check=True)
    assert f"resumed from {ckpt} at epoch {done}" in rerun.stdout
    assert not ckpt.exists()  # removed once the run is finished
    assert _epochs(out / "epochs.csv") == _epochs(ref / "epochs.csv")
    a, b = read_json(out / "metrics.json"), read_json(ref / "metrics.json")
    for key in ("status", "accuracy", "final_test_acc", "best_test_acc", "best_epoch", "final_test_loss",
                "final_train_loss", "final_train_acc", "epochs_run"):
        assert a[key] == b[key], key
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()


def _record_writes(monkeypatch) -> tuple[list[int], list[int]]:
    """The epochs of each checkpoint written, and the rows of each epochs.csv written, in order."""
    import paibench.training.run as run_module

    checkpoints: list[int] = []
    csv_rows: list[int] = []
    save, write_csv = run_module._save_checkpoint, run_module.write_epochs_csv

    def recording_save(path, state):
        checkpoints.append(state["epoch"])
        save(path, state)

    def recording_write(path, history):
        csv_rows.append(len(history))
        write_csv(path, history)

    monkeypatch.setattr(run_module, "_save_checkpoint", recording_save)
    monkeypatch.setattr(run_module, "write_epochs_csv", recording_write)
    return checkpoints, csv_rows


def _ticking_clock(monkeypatch, step: float) -> None:
    """Each reading of the checkpoint clock is `step` seconds after the previous one."""
    import itertools

    import paibench.training.run as run_module

    ticks = itertools.count()
    monkeypatch.setattr(run_module, "_clock", lambda: step * next(ticks))


def test_checkpoint_interval_spaces_checkpoints_and_always_saves_the_last_epoch(tmp_path, digits_file, monkeypatch):
    """Clock readings 10 s apart, interval 15 s: checkpoints after epochs 2 (20 s after the start) and 4 (the last;
    only 10 s after the previous write). epochs.csv is rewritten with each; the numbers are those of a run
    checkpointed after every epoch."""
    mask = _mask(tmp_path)
    every = train_run(_spec(digits_file, mask, tmp_path / "every", epochs=4, checkpoint_interval_s=0),
                      log=lambda m: None)
    checkpoints, csv_rows = _record_writes(monkeypatch)
    _ticking_clock(monkeypatch, 10.0)
    spaced = train_run(_spec(digits_file, mask, tmp_path / "spaced", epochs=4, checkpoint_interval_s=15,
                             keep_checkpoint=True), log=lambda m: None)
    assert checkpoints == [2, 4]
    assert csv_rows == [2, 4, 4]  # with each checkpoint, then once more with the run's outputs
    assert spaced["train"]["checkpoint_interval_s"] == 15 and every["train"]["checkpoint_interval_s"] == 0
    assert _results(spaced) == {**_results(every), "train": spaced["train"]}
    assert _epochs(tmp_path / "spaced" / "epochs.csv") == _epochs(tmp_path / "every" / "epochs.csv")


def test_run_killed_between_spaced_checkpoints_resumes_from_the_last_one_to_the_same_numbers(tmp_path, digits_file,
                                                                                             monkeypatch):
    import paibench.training.run as run_module

    mask = _mask(tmp_path)
    reference = train_run(_spec(digits_file, mask, tmp_path / "ref", epochs=4, checkpoint_interval_s=15),
                          log=lambda m: None)
    _ticking_clock(monkeypatch, 10.0)
    save = run_module._save_checkpoint

    def killed_at_the_last(path, state):
        if state["epoch"] == 4:
            raise KeyboardInterrupt
        save(path, state)

    monkeypatch.setattr(run_module, "_save_checkpoint", killed_at_the_last)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train_run(_spec(digits_file, mask, out, epochs=4, checkpoint_interval_s=15), log=lambda m: None)
    assert torch.load(out / "ck.pt", weights_only=True)["epoch"] == 2
    assert len(_epochs(out / "epochs.csv")) == 2  # the file shows the checkpointed epochs, not the lost ones
    monkeypatch.setattr(run_module, "_save_checkpoint", save)
    lines: list[str] = []
    rerun = train_run(_spec(digits_file, mask, out, epochs=4, checkpoint_interval_s=15), log=lines.append)
    assert f"resumed from {out / 'ck.pt'} at epoch 2" in lines
    assert sum(line.startswith("epoch ") for line in lines) == 2  # epochs 3 and 4 trained again
    assert _results(rerun) == _results(reference)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process we started and all its descendants (Snakemake and its job's shell and python)."""
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def _snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile",
            str(workdir / "config.yaml"), "--cores", "1", *args]


def _one_run_config(epochs: int, width: float) -> dict:
    return {"train": {"epochs": epochs, "batch_size": 8, "lr": 0.05, "checkpoint_interval_s": 0},
            "experiments": {"kill": {"datasets": ["digits"], "archs": [{"name": "vgg16", "width": width}],
                                     "methods": ["random"], "compressions": [10], "seeds": [0]}}}


@pytest.mark.workflow
def test_killed_snakemake_resumes_training_with_rerun_incomplete(tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "config.yaml").write_text(yaml.safe_dump(_one_run_config(epochs=3, width=0.25)))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    key = "kill/digits/vgg16_w0.25/random/c10/s0"
    ckpt = wd / "results" / "checkpoints" / f"{key}.pt"
    proc = subprocess.Popen(_snakemake_cmd(wd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(ckpt, proc)
    finally:
        _kill_tree(proc.pid)
    assert not (wd / "results" / "runs" / key / "metrics.json").exists()
    assert ckpt.exists()

    # What a user does after a crash: unlock (the killed Snakemake left its lock) and rerun.
    subprocess.run(_snakemake_cmd(wd, "--unlock"), env=env, check=True, capture_output=True, timeout=300)
    rerun = subprocess.run(_snakemake_cmd(wd, "--rerun-incomplete"), env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (wd / "logs" / "train" / f"{key}.log").read_text()
    assert "resumed from results/checkpoints/" in log, log
    metrics = read_json(wd / "results" / "runs" / key / "metrics.json")
    assert metrics["status"] == "ok" and metrics["epochs_run"] == 3
    assert not ckpt.exists()


# --------------------------------------------------------------- determinism and safety via Snakemake
def _tiny(seeds, compressions=(10,)) -> dict:
    return {"train": {"epochs": 1, "batch_size": 128, "lr": 0.05},
            "experiments": {"tiny": {"datasets": ["digits"], "archs": [{"name": "vgg16", "width": 0.125}],
                                     "methods": ["dense", "random"], "compressions": list(compressions),
                                     "seeds": list(seeds)}}}


def _snapshot(wd: Path) -> dict[str, tuple[int, str]]:
    """mtime and sha256 of every finished-run and mask file."""
    files = [p for sub in ("results/runs", "results/masks") for p in sorted((wd / sub).rglob("*")) if p.is_file()]
    return {str(p.relative_to(wd)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files}


@pytest.mark.workflow
def test_same_config_twice_gives_identical_masks_and_metrics_and_rerunning_keeps_finished_results(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_snakemake(a, _tiny([0]))
    run_snakemake(b, _tiny([0]))

    masks = sorted(p.relative_to(a) for p in (a / "results" / "masks").rglob("*.safetensors"))
    assert len(masks) == 2
    for rel in masks:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
        sa, sb = read_json(stats_path(a / rel)), read_json(stats_path(b / rel))
        assert sa["sha256"] == sb["sha256"] == sha256_file(a / rel)
    runs = sorted(p.parent.relative_to(a) for p in (a / "results" / "runs").rglob("metrics.json"))
    assert len(runs) == 2
    for rel in runs:
        assert _results(read_json(a / rel / "metrics.json")) == _results(read_json(b / rel / "metrics.json"))
        assert _epochs(a / rel / "epochs.csv") == _epochs(b / rel / "epochs.csv")
        ea, eb = read_json(a / rel / "eval.json"), read_json(b / rel / "eval.json")
        assert {k: v for k, v in ea.items() if k != "device"} == {k: v for k, v in eb.items() if k != "device"}

    before = _snapshot(a)
    time.sleep(0.05)  # so that a rewrite would show in mtime_ns even on coarse clocks
    run_snakemake(a, _tiny([0]))  # plain rerun: nothing to do
    assert _snapshot(a) == before
    run_snakemake(a, _tiny([0, 1]))  # widened: only the new seed is computed
    widened = _snapshot(a)
    assert {k: widened[k] for k in before} == before
    assert len(widened) > len(before) and (a / "results/runs/tiny/digits/vgg16_w0.125/random/c10/s1/metrics.json").exists()
    run_snakemake(a, _tiny([1]))  # shrunk: seed 0 leaves the tables but its files stay, untouched
    assert _snapshot(a) == widened
    runs_csv = list(csv.DictReader(open(a / "results" / "tables" / "runs.csv")))
    assert {row["seed"] for row in runs_csv} == {"1"}
    dry = run_snakemake(a, _tiny([0, 1]), "-n")  # widening back needs no training: the results are there
    assert "rule train" not in dry.stdout + dry.stderr and "rule mask" not in dry.stdout + dry.stderr
