"""Packed training (several runs in one process) gives exactly the files of the same runs trained alone."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paibench.pruning import make_mask
from paibench.training import RunSpec, parse_train_config, train_pack, train_run

TIMING = {"seconds", "wall_time_s", "command", "host", "pack_size"}  # how the job ran, not what it gave
RECIPE = {"epochs": 2, "batch_size": 128, "lr": 0.05, "weight_decay": 5e-3, "milestones": [1]}


def _specs(tmp_path: Path, digits_file, tag: str, members, recipe=RECIPE, arch="resnet20", width=0.25):
    cfg = parse_train_config(recipe)
    specs = []
    for method, seed in members:
        mask = tmp_path / "masks" / f"{arch}-{method}-s{seed}.safetensors"
        if not mask.exists():
            make_mask("digits", arch, method, 10, seed, str(mask), width=width)
        key = f"e/{arch}/{method}/s{seed}"
        specs.append(RunSpec(data=str(digits_file), mask=str(mask), out_dir=str(tmp_path / tag / key),
                             checkpoint=str(tmp_path / tag / "ck" / f"{method}-{seed}.pt"), run_key=key, train=cfg,
                             dataset="digits", arch=arch, width=width, arch_options={}, seed=seed, threads=1))
    return specs


def _strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def _csv_without_seconds(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    col = rows[0].index("seconds")
    return [r[:col] + r[col + 1:] for r in rows]


def test_packed_loop_equals_solo_runs_exactly(tmp_path, digits_file):
    members = [("random", 0), ("erk", 1)]
    solo = [train_run(s, log=lambda *_: None) for s in _specs(tmp_path, digits_file, "solo", members)]
    packed_specs = _specs(tmp_path, digits_file, "pack", members)
    packed = train_pack(packed_specs, log=lambda *_: None, mode="loop")
    for s, p, spec in zip(solo, packed, packed_specs):
        assert s["status"] == p["status"] == "ok"
        assert _strip(s) == _strip(p)  # same accuracies, losses, counts, hashes: bitwise, not approximately
        solo_dir = tmp_path / "solo" / spec.run_key
        pack_dir = Path(spec.out_dir)
        assert _csv_without_seconds(solo_dir / "epochs.csv") == _csv_without_seconds(pack_dir / "epochs.csv")
        a, b = load_file(solo_dir / "model.safetensors"), load_file(pack_dir / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert not Path(spec.checkpoint).exists()  # removed after a finished run, as for a solo run
    # Members really differ (different masks/seeds), so equality above is not trivial.
    assert len({p["final_train_loss"] for p in packed}) == len(members)


def test_packed_checkpoints_equal_solo_checkpoints(tmp_path, digits_file):
    recipe = {**RECIPE, "epochs": 1, "keep_checkpoint": True}
    members = [("random", 0), ("random", 1)]
    solo = _specs(tmp_path, digits_file, "solo", members, recipe)
    for s in solo:
        train_run(s, log=lambda *_: None)
    packed = _specs(tmp_path, digits_file, "pack", members, recipe)
    train_pack(packed, log=lambda *_: None, mode="loop")
    for s, p in zip(solo, packed):
        a = torch.load(s.checkpoint, weights_only=True)
        b = torch.load(p.checkpoint, weights_only=True)
        assert a["epoch"] == b["epoch"] == 1 and a["run_key"] == b["run_key"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)


def test_pack_killed_while_writing_outputs_loses_no_trained_epoch(tmp_path, digits_file, monkeypatch):
    """A kill after the first member wrote its files: Snakemake deletes every output of the job, and the rerun
    restores each member from its final checkpoint, training no epoch again, with the same results."""
    from paibench.training.run import RunState

    members = [("random", 0), ("erk", 1)]
    specs = _specs(tmp_path, digits_file, "pack", members)
    finish = RunState.finish

    def killed_at_second(self, *args):
        if self.spec.run_key == specs[1].run_key:
            raise KeyboardInterrupt
        return finish(self, *args)

    monkeypatch.setattr(RunState, "finish", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        train_pack(specs, log=lambda *_: None, mode="loop")
    first = json.loads((Path(specs[0].out_dir) / "metrics.json").read_text())
    assert all(Path(s.checkpoint).exists() for s in specs)  # kept until every member has written its files
    for s in specs:  # what Snakemake does with the outputs of a killed job
        for name in ("metrics.json", "epochs.csv", "model.safetensors"):
            (Path(s.out_dir) / name).unlink(missing_ok=True)
    monkeypatch.setattr(RunState, "finish", finish)
    lines: list[str] = []
    rerun = train_pack(specs, log=lines.append, mode="loop")
    assert not any(line.split("] ", 1)[-1].startswith("epoch ") for line in lines), lines  # nothing retrained
    assert sum("resumed from" in line for line in lines) == 2
    assert _strip(rerun[0]) == _strip(first)
    solo = train_run(_specs(tmp_path, digits_file, "solo", members[1:])[0], log=lambda *_: None)
    assert _strip(rerun[1]) == _strip(solo)  # the member that never wrote its files: as if trained alone
    assert not any(Path(s.checkpoint).exists() for s in specs)


def test_pack_members_times_add_up_to_the_job(tmp_path, digits_file):
    """Each member records its share of the pack's steps (plus its own evaluations), so the grid's training
    time summed over runs is the time spent, not the pack's time once per member."""
    import time

    specs = _specs(tmp_path, digits_file, "pack", [("random", 0), ("erk", 1), ("random", 2)])
    t0 = time.perf_counter()
    results = train_pack(specs, log=lambda *_: None, mode="loop")
    elapsed = time.perf_counter() - t0
    assert all(r["pack_size"] == 3 for r in results)
    assert sum(r["wall_time_s"] for r in results) <= elapsed
    for r, s in zip(results, specs):
        rows = (Path(s.out_dir) / "epochs.csv").read_text().splitlines()
        col = rows[0].split(",").index("seconds")
        assert r["wall_time_s"] == pytest.approx(sum(float(x.split(",")[col]) for x in rows[1:]))


def test_packed_vmap_matches_solo_within_float_noise(tmp_path, digits_file):
    """The GPU throughput path (one vectorised model) on the CPU: same learning, summation order aside."""
    # One full-batch step per epoch: this tiny net is chaotic (a 1e-6 relative change of the learning rate
    # moves solo weights by ~0.1 within one 12-step epoch), so only a few steps can be compared weight by
    # weight. Two epochs also cover carrying momentum buffers across the per-epoch stack/unstack.
    members = [("random", 0), ("erk", 1)]
    recipe = {**RECIPE, "epochs": 2, "batch_size": 4096}
    solo = [train_run(s, log=lambda *_: None) for s in _specs(tmp_path, digits_file, "solo", members, recipe)]
    packed_specs = _specs(tmp_path, digits_file, "pack", members, recipe)
    packed = train_pack(packed_specs, log=lambda *_: None, mode="vmap")
    for s, p, spec in zip(solo, packed, packed_specs):
        assert p["status"] == "ok" and p["pack_mode"] == "vmap" and s["pack_mode"] == "loop"
        assert p["final_train_loss"] == pytest.approx(s["final_train_loss"], rel=1e-3, abs=1e-4)
        assert p["final_test_loss"] == pytest.approx(s["final_test_loss"], rel=1e-3, abs=1e-4)
        weights = load_file(Path(spec.out_dir) / "model.safetensors")
        ref = load_file(tmp_path / "solo" / spec.run_key / "model.safetensors")
        for k in ref:
            assert torch.allclose(weights[k].float(), ref[k].float(), atol=1e-3, rtol=1e-3), k
        masks = load_file(spec.mask)
        for name, m in masks.items():
            assert torch.count_nonzero(weights[name][~m]) == 0  # the mask holds in the vectorised path too


def test_pack_refuses_mixed_recipes(tmp_path, digits_file):
    from paibench.errors import PaibenchError

    a = _specs(tmp_path, digits_file, "x", [("random", 0)])
    b = _specs(tmp_path, digits_file, "y", [("random", 1)], {**RECIPE, "lr": 0.01})
    with pytest.raises(PaibenchError, match="different training recipe"):
        train_pack(a + b, log=lambda *_: None)


def test_cli_train_pack_writes_each_members_files(tmp_path, digits_file, capsys):
    from paibench.cli import main

    specs = _specs(tmp_path, digits_file, "cli", [("random", 0), ("random", 1)], {**RECIPE, "epochs": 1})
    argv = ["train-pack", "--threads", "1"]
    for s in specs:
        argv += ["--member", json.dumps({"data": s.data, "mask": s.mask, "out_dir": s.out_dir,
                                         "checkpoint": s.checkpoint, "run_key": s.run_key, "dataset": "digits",
                                         "arch": s.arch, "width": s.width, "seed": s.seed})]
    argv += ["--train-config", json.dumps(s.train)]
    assert main(argv) == 0
    for s in specs:
        metrics = json.loads((Path(s.out_dir) / "metrics.json").read_text())
        assert metrics["run_key"] == s.run_key and metrics["status"] == "ok"
        assert (Path(s.out_dir) / "epochs.csv").exists() and (Path(s.out_dir) / "model.safetensors").exists()


def test_member_command_is_the_same_from_members_or_a_manifest(monkeypatch):
    from paibench.training.outputs import command_line

    a, b = json.dumps({"data": "d.pt", "out_dir": "a"}), json.dumps({"data": "d.pt", "out_dir": "b"})
    tail = ["--threads", "1", "--mode", "loop", "--train-config", "{}", "--evaluate"]
    own = "paibench train-pack --member " + shlex.quote(b) + " --threads 1 --mode loop --train-config '{}' --evaluate"
    for argv in (["--member", a, "--member", b], ["--manifest", "pack.json"], ["--manifest=pack.json"],
                 ["--manifest", "pack.json", "--member", a]):
        monkeypatch.setattr(sys, "argv", ["/venv/bin/paibench", "train-pack", *argv, *tail])
        assert command_line(b) == own, argv
    monkeypatch.setattr(sys, "argv", ["/venv/bin/paibench", "train", "--data", "d.pt"])
    assert command_line() == "paibench train --data d.pt"


@pytest.mark.workflow
def test_workflow_packs_runs_and_keeps_finished_runs_cached(tmp_path):
    from conftest import planned_jobs, run_snakemake, tiny_config

    config = tiny_config(methods=["random"], compressions=[10], seeds=[0, 1])
    config["train"]["epochs"] = 1
    config["pack"] = 2
    config["pack_mode"] = "vmap"  # the config's mode reaches train-pack (on the CPU auto would be loop)
    work = tmp_path / "w"
    dry = run_snakemake(work, config, "-n", "results/tables/runs.csv")
    jobs = planned_jobs(dry)
    assert jobs.get("train_pack") == 1 and "train" not in jobs
    run_snakemake(work, config, "results/tables/runs.csv")
    runs = [work / f"results/runs/tiny/digits/vgg16_w0.125/random/c10/s{s}" for s in (0, 1)]
    logs = list((work / "logs" / "train_pack").rglob("*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "packing 2 runs" in text and "(mode vmap)" in text, text[:500]
    assert all(json.loads((r / "metrics.json").read_text())["pack_mode"] == "vmap" for r in runs)
    # The pack's members come from a manifest written with the plan, not its command line: Snakemake stores a
    # job's command with each output (4 per run), so N members there would cost N^2. Each run's metrics still
    # record a command of its own.
    import base64

    manifest = _manifest_members(work)
    assert sorted(m["out_dir"] for m in manifest) == sorted(str(r.relative_to(work)) for r in runs)
    for r in runs:
        record = json.loads((work / ".snakemake/metadata" / base64.b64encode(
            str((r / "metrics.json").relative_to(work)).encode()).decode()).read_text())
        assert "train-pack --manifest .snakemake/paibench/train_pack/" in record["shellcmd"], record["shellcmd"]
        assert "--member" not in record["shellcmd"]
        assert not any(str(m.relative_to(work)) in record["shellcmd"] for m in runs)  # no member's folder
        command = json.loads((r / "metrics.json").read_text())["command"]
        assert command.count("--member") == 1 and "--manifest" not in command
        assert str(r.relative_to(work)) in command
    before = {r: (r / "metrics.json").stat().st_mtime_ns for r in runs}
    # One more seed: one new job holding only the new run; the finished pack is not retrained.
    config["experiments"]["tiny"]["seeds"] = [0, 1, 2]
    jobs = planned_jobs(run_snakemake(work, config, "-n", "results/tables/runs.csv"))
    assert jobs.get("train_pack") == 1
    run_snakemake(work, config, "results/tables/runs.csv")
    assert all((r / "metrics.json").stat().st_mtime_ns == t for r, t in before.items())
    assert (work / "results/runs/tiny/digits/vgg16_w0.125/random/c10/s2/metrics.json").exists()


def _manifest_members(work):
    """The member objects of every pack manifest the workflow wrote."""
    from paibench import paths

    files = list((work / paths.TRAIN_PACK_MANIFEST).parent.glob("*.json"))
    assert files
    return [m for f in files for m in json.loads(f.read_text())]
