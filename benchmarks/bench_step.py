"""Where one CPU training step of a small model goes, and what the optimizer's multi-tensor path saves.

One training step of the engine, split into its parts (batch and augmentation, forward + loss, backward,
the mask's one gradient multiply, the optimizer step), timed over many steps with one torch thread, for
SGD as torch runs it on the CPU by default (`foreach=False`: a loop of small ops per parameter) and with
`foreach=True` (one multi-tensor op per kind). Both give bitwise the same weights (checked here), so either
could be used without changing a number; paibench keeps torch's default on the CPU unless this table shows a
gain. Also: what a new process pays before its first step.

    python benchmarks/bench_step.py --out results/benchmarks/step_cpu
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _digits import prepare_digits  # noqa: E402
from _report import cpu_environment, publish_report  # noqa: E402
from paibench.pruning import make_mask  # noqa: E402
from paibench.training import RunSpec, parse_train_config  # noqa: E402


def steps_of(arch: str, width: float, foreach: bool, steps: int, workdir: Path) -> dict:
    """Time the parts of `steps` training steps of one run (the engine's RunState, as train_pack drives it)."""
    from paibench.data import load_prepared
    from paibench.tasks import task_for
    from paibench.training.recipe import pick_device
    from paibench.training.run import RunState

    cfg = parse_train_config({"epochs": 1, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "nesterov": True,
                              "weight_decay": 5e-4})
    spec = RunSpec(data=str(workdir / "digits.pt"), mask=str(workdir / f"{arch}.safetensors"),
                   out_dir=str(workdir / f"run-{arch}-{foreach}"), checkpoint=str(workdir / f"ck-{arch}-{foreach}.pt"),
                   run_key="bench", train=cfg, dataset="digits", arch=arch, width=width, arch_options={}, seed=0,
                   threads=1)
    device = pick_device("cpu")
    payload = load_prepared(spec.data)
    task = task_for(payload["kind"])
    run = RunState(spec, device, payload, task.load(payload, device, cfg), task, lambda *_: None)
    groups = [{k: v for k, v in g.items() if k != "foreach"} for g in run.optimizer.param_groups]
    run.optimizer = torch.optim.SGD(groups, lr=cfg["lr"], foreach=foreach)  # same groups, this update path
    parts = {"batch": 0.0, "forward+loss": 0.0, "backward": 0.0, "mask": 0.0, "optimizer": 0.0}
    run.begin_epoch(0)
    per_epoch = task.steps_per_epoch(run.data, cfg["batch_size"])
    images = 0
    for i in range(steps):
        if i and i % per_epoch == 0:
            run.begin_epoch(0)
        t0 = time.perf_counter()
        inputs, targets, _ = run.batch(i % per_epoch)
        t1 = time.perf_counter()
        loss = F.cross_entropy(run.step_model(*inputs), targets)
        t2 = time.perf_counter()
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        run.enforcer.apply_to_grads()
        t4 = time.perf_counter()
        run.optimizer.step()
        t5 = time.perf_counter()
        for k, a, b in (("batch", t0, t1), ("forward+loss", t1, t2), ("backward", t2, t3), ("mask", t3, t4),
                        ("optimizer", t4, t5)):
            parts[k] += b - a
        images += len(targets)
    total = sum(parts.values())
    weights = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    return {"arch": f"{arch} w{width:g}", "foreach": foreach, "steps": steps, "images_per_s": round(images / total, 1),
            **{f"{k}_ms": round(1000 * v / steps, 2) for k, v in parts.items()}, "_weights": weights}


def startup() -> dict:
    """Seconds a fresh process spends importing torch and paibench, and on its first optimizer."""
    code = ("import time; t=time.perf_counter(); import torch, paibench.training.run; a=time.perf_counter()-t; "
            "t=time.perf_counter(); torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1); "
            "b=time.perf_counter()-t; print(a, b)")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
            for _ in range(3)]
    return {"import_torch_paibench_s": round(min(float(r[0]) for r in runs), 2),
            "first_optimizer_s": round(min(float(r[1]) for r in runs), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare_digits(work)  # work/digits.pt, which steps_of reads
        for arch, width in (("vgg16", 0.25), ("resnet20", 0.5)):
            make_mask("digits", arch, "erk", 30, 0, str(work / f"{arch}.safetensors"), width=width)
            steps_of(arch, width, True, 10, work)  # warm-up: first optimizer, allocator
            pair = []
            for foreach in (False, True, False, True):  # interleaved, the better of two each
                pair.append(steps_of(arch, width, foreach, args.steps, work))
            for foreach in (False, True):
                best = max((r for r in pair if r["foreach"] is foreach), key=lambda r: r["images_per_s"])
                rows.append(best)
            same = all(torch.equal(pair[0]["_weights"][k], pair[1]["_weights"][k]) for k in pair[0]["_weights"])
            for r in rows[-2:]:
                r["bitwise_equal_weights"] = same
    for r in rows:
        r.pop("_weights")
    boot = startup()
    notes = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        loop, multi = (next(r for r in rows if r["arch"] == arch and r["foreach"] is f) for f in (False, True))
        framework = sum(loop[f"{k}_ms"] for k in ("batch", "mask", "optimizer"))
        step = sum(loop[f"{k}_ms"] for k in ("batch", "forward+loss", "backward", "mask", "optimizer"))
        notes.append(f"{arch}: forward and backward are {100 * (1 - framework / step):.0f} % of a step "
                     f"({step:.1f} ms); batch, mask and optimizer {framework:.1f} ms. foreach=True: "
                     f"{multi['images_per_s'] / loop['images_per_s']:.2f}x the images/s of the default.")
    notes.append(f"A new process before its first step: {boot['import_torch_paibench_s']} s to import torch and "
                 f"paibench, then {boot['first_optimizer_s']} s for the first torch.optim optimizer (it imports "
                 f"torch._dynamo); packs and batches pay this once per process.")
    publish_report(args.out, "One CPU training step (digits, batch 64, SGD momentum 0.9 Nesterov, wd 5e-4, erk mask "
                   "at 30x)", cpu_environment(), rows, notes, startup=boot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
