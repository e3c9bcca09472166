"""The CUDA tier (``pytest -m cuda``): paibench's GPU path, run wherever a GPU is visible.

Every test here skips with a reason when ``torch.cuda.is_available()`` is false, so the tier costs nothing
on the CPU machines (CI). On a GPU it checks, on digits with VGG-16 at width 1/8 (or ResNet-20 at 1/4)
and a few epochs, so that the whole tier should take one to two minutes on one H100 (an estimate: the tier
was written on machines without a GPU, and benchmarks/gpu_visit.py records its first real timing):

* a masked run trains on CUDA and its pruned weights (and their momentum) stay exactly zero, with bf16
  autocast and with amp off (fp32), channels-last and the fused optimizer as the engine sets them;
* a pack of two runs trained as one vectorised model (``train_pack``, mode ``auto`` = ``vmap`` on CUDA)
  matches the same runs trained alone: losses within 0.2 % and weights within 2e-3 with TF32 off (fp32),
  losses within 5 % with bf16 autocast;
* ``compile: true`` gives the same first-epoch training loss as eager within 1 % (relative);
* ``paibench train`` on CUDA, killed with SIGKILL after its first checkpoint, resumes from it when run again:
  the checkpointed epochs are kept as they were, the run ends with all its epochs and a mask that holds
  (CUDA kernels are not bitwise deterministic, so the resumed run is compared with an uninterrupted one
  within a tolerance, unlike the exact CPU test in test_reliability.py);
* every registered mask method runs with ``device="cuda"`` in ``make_mask``. Data-free masks, whose positions
  come from the seeded CPU generator and from integer or exact arithmetic (dense, random, erk, er, igq,
  magnitude, mica and rpi with an ERK budget, xnet, rreg, random_graph), equal the CPU mask exactly. Masks
  ranked by float scores computed on the device (snip, grasp, iter_snip, force, and the data-free synflow)
  keep the same number of weights, but positions at the threshold may differ: GPU kernels sum in another
  order and cuDNN convolutions use TF32 by default, so near-ties can swap. They must keep at least 90 % of
  the CPU mask's positions. The workflow computes every mask on the CPU (``paibench mask`` defaults to
  ``--device cpu``), which keeps grids bitwise reproducible on any machine;
* ``feature_product: sparse`` (graph features as CSR matrices) gives the dense product's outputs and gradients;
* local GPU slots (paibench/gpu_slots.py) pin each concurrent job to its own GPU: a job that holds slot i
  sees exactly one device, physical GPU i, through CUDA_VISIBLE_DEVICES.

Set ``PAIBENCH_CUDA_REPORT=<file>`` to append what the tests measured (overlaps, loss differences, times)
as JSON lines; benchmarks/gpu_visit.py does, and keeps the file with the visit's results.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paibench.pruning import make_mask
from paibench.pruning.maskio import load_mask
from paibench.pruning.methods import METHODS
from paibench.training import RunSpec, evaluate_run, parse_train_config, train_pack, train_run

REPO = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not HAS_CUDA, reason="CUDA tier: torch.cuda.is_available() is False on this machine "
                                            "(run `pytest -m cuda tests/test_cuda.py` on a GPU machine)"),
]

WIDTH = 0.125
# Constant learning rate, 4 epochs: VGG-16/8 on digits leaves chance level within that (step decay would not).
RECIPE = {"epochs": 4, "batch_size": 64, "lr": 0.05, "schedule": "constant", "device": "cuda"}
# Data-free methods must give the CPU's mask bit for bit: positions from the seeded CPU generator, counts
# from shapes, or scores that are the initial weights themselves, ranked on the CPU in float64. Exceptions,
# ranked by float scores computed on the device like the data-dependent methods:
FLOAT_SCORED = {"synflow"}
# Float-scored on the device: same kept count, overlap of positions at least this.
MIN_OVERLAP = 0.90
METHOD_OPTIONS = {"mica": {"budget": "erk"}, "rpi": {"budget": "erk"}, "synflow": {"rounds": 20}}


def record(test: str, **values) -> None:
    """Append one JSON line of measurements to $PAIBENCH_CUDA_REPORT (when set)."""
    path = os.environ.get("PAIBENCH_CUDA_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, **values}, default=str) + "\n")


@pytest.fixture
def no_tf32():
    """fp32 really in fp32 for the comparisons (cuDNN convolutions default to TF32 on Ampere and later)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _mask(tmp_path: Path, method="random", seed=0, arch="vgg16", width=WIDTH, name=None) -> Path:
    out = tmp_path / "masks" / f"{name or f'{arch}-{method}-s{seed}'}.safetensors"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        make_mask("digits", arch, method, 10, seed, str(out), width=width)
    return out


def _spec(tmp_path, digits_file, mask, tag, recipe, arch="vgg16", width=WIDTH, seed=0, key=None) -> RunSpec:
    key = key or f"cuda/digits/{arch}/{tag}/s{seed}"
    return RunSpec(data=str(digits_file), mask=str(mask), out_dir=str(tmp_path / tag / key),
                   checkpoint=str(tmp_path / tag / "ck" / f"s{seed}.pt"), run_key=key,
                   train=parse_train_config(recipe), dataset="digits", arch=arch, width=width, arch_options={},
                   seed=seed, threads=1)


def _epochs(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _assert_mask_holds(weights: dict, mask_file: Path) -> None:
    masks, _ = load_mask(mask_file)
    for name, m in masks.items():
        assert torch.count_nonzero(weights[name][~m]) == 0, f"{name}: a pruned weight moved on CUDA"
        assert torch.count_nonzero(weights[name][m]) > 0, f"{name}: every kept weight is zero"


# ------------------------------------------------------------------------------------ masked training
@pytest.mark.parametrize("amp", ["bf16", "off"])
def test_masked_run_trains_on_cuda_and_pruned_weights_stay_zero(tmp_path, digits_file, amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16 support; the engine falls back to fp32")
    mask = _mask(tmp_path)
    spec = _spec(tmp_path, digits_file, mask, f"amp-{amp}", {**RECIPE, "amp": amp, "optimizer": "sgd",
                                                            "momentum": 0.9, "keep_checkpoint": True})
    started = time.perf_counter()
    metrics = train_run(spec, log=lambda *_: None)
    seconds = time.perf_counter() - started
    assert metrics["status"] == "ok" and metrics["device"].startswith("cuda:"), metrics["device"]
    rows = _epochs(Path(spec.out_dir) / "epochs.csv")
    losses = [float(r["train_loss"]) for r in rows]
    record("masked_run", amp=amp, seconds=seconds, train_loss=losses, test_acc=metrics["final_test_acc"])
    assert len(rows) == RECIPE["epochs"]
    assert losses[-1] < 0.9 * losses[0], f"the run did not learn on CUDA (amp {amp}): train losses {losses}"
    assert metrics["best_test_acc"] > 0.25, metrics["best_test_acc"]  # chance is 0.10
    weights = load_file(Path(spec.out_dir) / "model.safetensors")
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())  # fp32 masters
    _assert_mask_holds(weights, mask)
    # The fused CUDA optimizer must leave the momentum of pruned weights at exactly zero too.
    state = torch.load(spec.checkpoint, map_location="cpu", weights_only=True)
    masks, _ = load_mask(mask)
    names = [n for n in state["model"] if n in masks]
    buffers = [s["momentum_buffer"] for _, s in sorted(state["optimizer"]["state"].items())
               if s.get("momentum_buffer") is not None]
    checked = 0
    for name, buf in zip(names, buffers):  # weight kernels/matrices come first, in parameter order
        assert buf.shape == masks[name].shape, (name, tuple(buf.shape))
        assert torch.count_nonzero(buf[~masks[name]]) == 0, f"{name}: momentum of pruned weights moved"
        checked += 1
    assert checked == len(masks)
    # An independent re-evaluation on CUDA (fp32, no channels-last) agrees with the run's last epoch.
    ev = evaluate_run(str(digits_file), str(mask), str(Path(spec.out_dir) / "model.safetensors"),
                      str(Path(spec.out_dir) / "metrics.json"), str(tmp_path / f"eval-{amp}.json"), device="cuda")
    assert ev["pruned_nonzero"] == 0 and ev["device"].startswith("cuda:")
    # bf16 logits vs fp32 ones flip a few near-tied predictions of a half-trained net: 5 points; fp32: 2 points.
    tolerance = 0.05 if amp == "bf16" else 0.02
    assert abs(ev["test_acc"] - metrics["final_test_acc"]) <= tolerance, (ev["test_acc"], metrics["final_test_acc"])


# ---------------------------------------------------------------------------------------------- vmap
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_vmap_pack_matches_solo_runs(tmp_path, digits_file, no_tf32, amp):
    """Two ResNet-20/4 runs as one vectorised model vs alone: same learning, summation order aside.

    As on the CPU (test_packing.py), one full-batch step per epoch keeps the comparison weight by weight
    meaningful (the net is chaotic over many steps); two epochs also carry momentum across the per-epoch
    stacking. fp32 (TF32 off): losses within 0.2 %, weights within 2e-3. bf16: losses within 5 %.
    """
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16 support")
    recipe = {"epochs": 2, "batch_size": 4096, "lr": 0.05, "weight_decay": 5e-3, "milestones": [1],
              "device": "cuda", "amp": amp}
    members = [("random", 0), ("erk", 1)]
    masks = [_mask(tmp_path, method, seed, arch="resnet20", width=0.25) for method, seed in members]

    def specs(tag):
        return [_spec(tmp_path, digits_file, m, tag, recipe, arch="resnet20", width=0.25, seed=s,
                      key=f"e/resnet20/{meth}/s{s}") for m, (meth, s) in zip(masks, members)]

    solo_specs = specs("solo")
    solo = [train_run(s, log=lambda *_: None) for s in solo_specs]
    lines: list[str] = []
    packed_specs = specs("pack")
    packed = train_pack(packed_specs, log=lines.append, mode="auto")
    assert any("mode vmap" in line for line in lines), lines[:3]  # auto = vmap for 2+ image runs on CUDA
    rel = 2e-3 if amp == "off" else 5e-2
    worst = 0.0
    for s, p, sspec, pspec in zip(solo, packed, solo_specs, packed_specs):
        assert p["status"] == s["status"] == "ok"
        record("vmap_pack", amp=amp, run=pspec.run_key, solo_loss=s["final_train_loss"],
               packed_loss=p["final_train_loss"], solo_test_loss=s["final_test_loss"],
               packed_test_loss=p["final_test_loss"])
        assert p["final_train_loss"] == pytest.approx(s["final_train_loss"], rel=rel, abs=1e-4)
        assert p["final_test_loss"] == pytest.approx(s["final_test_loss"], rel=rel, abs=1e-4)
        weights = load_file(Path(pspec.out_dir) / "model.safetensors")
        ref = load_file(Path(sspec.out_dir) / "model.safetensors")
        _assert_mask_holds(weights, Path(pspec.mask))  # the vectorised path keeps the mask too
        for k in ref:
            if ref[k].is_floating_point():
                worst = max(worst, float((weights[k] - ref[k]).abs().max()))
        if amp == "off":
            for k in ref:
                assert torch.allclose(weights[k].float(), ref[k].float(), atol=2e-3, rtol=2e-3), k
    record("vmap_pack_weights", amp=amp, max_abs_weight_difference=worst)
    assert packed[0]["final_train_loss"] != packed[1]["final_train_loss"]  # the members really differ


# ------------------------------------------------------------------------------------------- compile
def test_compile_gives_the_same_first_epoch_loss(tmp_path, digits_file, no_tf32):
    """torch.compile on CUDA: same first-epoch training loss as eager within 1 % (fused kernels round
    differently). Batch 479 divides digits' 1,437 training images, so there is no recompilation for a
    short last batch and the test pays for one compilation only."""
    mask = _mask(tmp_path)
    results = {}
    for flag in (False, True):
        recipe = {"epochs": 1, "batch_size": 479, "lr": 0.05, "device": "cuda", "amp": "off", "compile": flag}
        spec = _spec(tmp_path, digits_file, mask, f"compile-{flag}", recipe)
        started = time.perf_counter()
        metrics = train_run(spec, log=lambda *_: None)
        results[flag] = (metrics, time.perf_counter() - started)
        assert metrics["status"] == "ok"
        _assert_mask_holds(load_file(Path(spec.out_dir) / "model.safetensors"), mask)
    eager, compiled = results[False][0]["final_train_loss"], results[True][0]["final_train_loss"]
    record("compile", eager_loss=eager, compiled_loss=compiled, eager_s=results[False][1],
           compiled_s=results[True][1])
    assert compiled == pytest.approx(eager, rel=1e-2), (eager, compiled)


# -------------------------------------------------------------------------------- resume after SIGKILL
def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _train_cmd(data, mask, out, ckpt, epochs=3):
    cfg = json.dumps({"epochs": epochs, "batch_size": 8, "lr": 0.05, "device": "cuda", "checkpoint_interval_s": 0})
    return [sys.executable, "-m", "paibench", "train", "--data", str(data), "--mask", str(mask),
            "--out-dir", str(out), "--checkpoint", str(ckpt), "--run-key", "resume/digits/vgg16_w0.25/random/c10/s0",
            "--dataset", "digits", "--arch", "vgg16", "--width", "0.25", "--seed", "0", "--threads", "1",
            "--train-config", cfg]


def test_resume_after_sigkill_on_cuda(tmp_path, digits_file):
    mask = _mask(tmp_path, width=0.25, name="resume")
    ref = tmp_path / "reference"
    subprocess.run(_train_cmd(digits_file, mask, ref, tmp_path / "ref.pt"), check=True, env=_env(), timeout=300,
                   capture_output=True)
    out, ckpt = tmp_path / "killed", tmp_path / "checkpoints" / "killed.pt"
    proc = subprocess.Popen(_train_cmd(digits_file, mask, out, ckpt), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not ckpt.exists():  # the first epoch is done and checkpointed; the second has begun
            assert proc.poll() is None, f"training ended (rc {proc.returncode}) before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    done = state["epoch"]
    assert 1 <= done < 3
    rerun = subprocess.run(_train_cmd(digits_file, mask, out, ckpt), env=_env(), timeout=300, capture_output=True,
                           text=True, check=True)
    assert f"resumed from {ckpt} at epoch {done}" in rerun.stdout, rerun.stdout[-2000:]
    assert not ckpt.exists()  # removed once the run is finished
    rows = _epochs(out / "epochs.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, kept in zip(rows[:done], state["history"]):  # the checkpointed epochs are carried over as they were
        assert float(row["train_loss"]) == pytest.approx(kept["train_loss"], rel=1e-12)
        assert float(row["test_acc"]) == pytest.approx(kept["test_acc"], rel=1e-12)
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((ref / "metrics.json").read_text())
    record("resume", killed_after_epoch=done, resumed_acc=a["final_test_acc"], reference_acc=b["final_test_acc"],
           resumed_loss=a["final_train_loss"], reference_loss=b["final_train_loss"])
    assert a["status"] == b["status"] == "ok" and a["epochs_run"] == b["epochs_run"] == 3
    assert a["device"].startswith("cuda:")
    # Not bitwise on CUDA (atomics in cuDNN's backward kernels): the same run within a tolerance.
    assert abs(a["final_test_acc"] - b["final_test_acc"]) <= 0.1, (a["final_test_acc"], b["final_test_acc"])
    _assert_mask_holds(load_file(out / "model.safetensors"), mask)


# -------------------------------------------------------------------------------------- mask methods
@pytest.mark.parametrize("method", METHODS.names())
def test_mask_method_on_cuda_matches_cpu(tmp_path, digits_payload, method):
    opts = METHOD_OPTIONS.get(method, {})
    files, seconds = {}, {}
    for device in ("cpu", "cuda"):
        files[device] = tmp_path / f"{device}.safetensors"
        started = time.perf_counter()
        stats = make_mask("digits", "vgg16", method, 10, 0, str(files[device]), options=opts, width=WIDTH,
                          payload=digits_payload, device=device)
        seconds[device] = time.perf_counter() - started
        assert stats["kept"] > 0
    cpu, _ = load_mask(files["cpu"])
    gpu, _ = load_mask(files["cuda"])
    assert cpu.keys() == gpu.keys()
    kept_cpu = sum(int(m.sum()) for m in cpu.values())
    kept_gpu = sum(int(m.sum()) for m in gpu.values())
    both = sum(int((cpu[n] & gpu[n]).sum()) for n in cpu)
    overlap = both / kept_cpu
    exact = all(torch.equal(cpu[n], gpu[n]) for n in cpu)
    record("mask_method", method=method, exact=exact, overlap=overlap, kept=kept_cpu, cpu_s=seconds["cpu"],
           cuda_s=seconds["cuda"])
    assert kept_gpu == kept_cpu, f"{method}: CUDA keeps {kept_gpu} weights, the CPU {kept_cpu}"
    spec = METHODS.get(method)
    if not spec.uses_data(spec.parse_options(opts)) and method not in FLOAT_SCORED:
        differing = [n for n in cpu if not torch.equal(cpu[n], gpu[n])]
        assert not differing, (f"{method}: the CUDA mask differs from the CPU mask in {differing[:3]} "
                               f"(overlap {overlap:.4f}); data-free methods are expected to be device-independent "
                               f"(add a float-scored one to FLOAT_SCORED)")
    else:
        assert overlap >= MIN_OVERLAP, (
            f"{method}: CUDA and CPU masks share only {overlap:.4f} of their kept positions (expected "
            f">= {MIN_OVERLAP}); float-scored methods may differ at the threshold (summation order, TF32), "
            f"not by this much")


# ----------------------------------------------------------------------------------------- GPU slots
SLOT_CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from paibench import gpu_slots
    folder, n = Path(sys.argv[1]), int(sys.argv[2])
    with gpu_slots.gpu_slot() as slot:
        (folder / f"start-{os.getpid()}").touch()
        deadline = time.monotonic() + 60
        while len(list(folder.glob("start-*"))) < n and time.monotonic() < deadline:
            time.sleep(0.05)  # hold the slot until every job holds one: all of them run at once
        import torch
        count = torch.cuda.device_count()
        props = torch.cuda.get_device_properties(0) if count else None
        uuid = str(getattr(props, "uuid", "") or props.name) if count else None
        print(json.dumps({"slot": slot, "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "count": count,
                          "uuid": uuid, "together": len(list(folder.glob("start-*")))}))
""")


def test_gpu_slots_pin_one_job_per_gpu(tmp_path):
    """max(2, GPUs) concurrent jobs: each holds its own slot i, and CUDA then shows it GPU i alone.

    On a one-GPU machine the slot count is faked to 2 (PAIBENCH_FAKE_GPU_COUNT): the job on slot 0 sees
    the real GPU, the job on slot 1 sees none, which shows that the pin, not luck, decides the device.
    """
    env = _env()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["PAIBENCH_GPU_LOCK_DIR"] = str(tmp_path / "locks")
    uuids = json.loads(subprocess.run(
        [sys.executable, "-c", "import json, torch; ps = [torch.cuda.get_device_properties(i) for i in "
                               "range(torch.cuda.device_count())]; "
                               "print(json.dumps([str(getattr(p, 'uuid', '') or p.name) for p in ps]))"],
        env=env, check=True, capture_output=True, text=True, timeout=120).stdout)
    real = len(uuids)
    n = max(2, real)
    if real < 2:
        env["PAIBENCH_FAKE_GPU_COUNT"] = str(n)
    (tmp_path / "sync").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", SLOT_CHILD, str(tmp_path / "sync"), str(n)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    seen = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        seen.append(json.loads(out.strip().splitlines()[-1]))
    record("gpu_slots", gpus=real, jobs=seen)
    assert sorted(s["slot"] for s in seen) == list(range(n)), seen  # one slot each, none shared
    for s in seen:
        assert s["together"] == n, s  # all jobs held their slots at the same time
        assert s["cvd"] == str(s["slot"]), s
        if s["slot"] < real:
            assert s["count"] == 1 and s["uuid"] == uuids[s["slot"]], (s, uuids)
        else:
            assert s["count"] == 0, s  # a slot beyond the real GPUs: nothing visible, so no sharing by accident


@pytest.mark.parametrize("arch", ["gcn", "gin"])
def test_sparse_feature_product_on_cuda_matches_the_dense_one(arch, no_tf32):
    """`feature_product: sparse` on CUDA (opt-in there; auto stays dense on GPUs): CSR features and adjacency on
    the device give the dense outputs and gradients (fp32, TF32 off)."""
    from paibench.data import DatasetInfo
    from paibench.models import build_model
    from paibench.models.gnn import SparseAdjacency, SparseFeatures, normalized_adjacency

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 300, generator=gen) * (torch.rand(64, 300, generator=gen) < 0.03)
    edges = torch.randint(0, 64, (2, 200), generator=gen)
    adj = normalized_adjacency(torch.cat([edges, edges.flip(0)], dim=1).cuda(), 64)
    model = build_model(arch, DatasetInfo("sbm", "graph", 4, num_features=300), 0.25, seed=0).cuda().eval()
    results = []
    for features, adjacency in ((x.cuda(), adj), (SparseFeatures(x.cuda()), SparseAdjacency(adj))):
        model.zero_grad()
        out = model(features, adjacency)
        out.square().sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    record("sparse_features", arch=arch, max_out_diff=float((results[0][0] - results[1][0]).abs().max()))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-4)
    for name in results[0][1]:
        assert torch.allclose(results[0][1][name], results[1][1][name], atol=1e-3, rtol=1e-3), name
