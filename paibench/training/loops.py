"""Training loops: runs trained alone, or packed in one process on one device -- interleaved batch by batch
(``loop``, bitwise equal to solo runs) or as one vectorised model (``vmap``, the GPU throughput path)."""

from __future__ import annotations

import json
import time

from paibench.errors import PaibenchError
from paibench.lazy import F, torch
from paibench.names import PACK_MODES
from paibench.progress import Progress
from paibench.training.masking import mask_gradients
from paibench.training.recipe import autocast, device_name, make_optimizer, pick_device, resolve_threads
from paibench.training.run import RunSpec, RunState


def _vmap_epoch(runs: list[RunState], cfg: dict, device, on_step=lambda: None) -> None:
    """One epoch of several same-architecture runs as one vectorised model (torch.func.vmap).

    Convolutions of the N runs become one grouped convolution, so N small models fill a GPU the way one
    large batch does. Parameters, buffers and optimizer state are stacked from the runs at the start of
    the epoch and written back at its end, so checkpoints and outputs stay exactly those of solo runs.
    Results match solo training up to floating-point summation order (not bitwise).
    """
    from torch.func import functional_call, stack_module_state, vmap

    models = [r.model for r in runs]
    base = models[0]
    params, buffers = stack_module_state(models)
    names = list(params)
    stacked = [params[k] for k in names]
    dims = [p.dim() - 1 for p in stacked]
    opt = make_optimizer(cfg, stacked, dims, device)
    sds = [r.optimizer.state_dict() for r in runs]
    state = {}
    for j, s in sds[0]["state"].items():
        state[j] = {k: (torch.stack([sd["state"][j][k] for sd in sds]) if torch.is_tensor(v) and v.dim() > 0 else v)
                    for k, v in s.items()}
    opt.load_state_dict({"state": state, "param_groups": sds[0]["param_groups"]})
    mask_by_name = {}
    for r in runs:
        for n_, t in zip(r.masks, r.enforcer.masks):
            mask_by_name.setdefault(n_, []).append(t)
    grads_masks = [(params[n_], torch.stack(ts)) for n_, ts in mask_by_name.items()]

    def forward(p, b, x):
        return functional_call(base, (p, b), (x,))

    fwd = vmap(forward, randomness="different")
    base.train()
    task = runs[0].task
    loss_sums = torch.zeros(len(runs), device=device)
    corrects = torch.zeros(len(runs), device=device, dtype=torch.long)
    seen = 0
    for step in range(task.steps_per_epoch(runs[0].data, cfg["batch_size"])):
        batches = [r.batch(step) for r in runs]
        xs = torch.stack([b[0][0].contiguous() for b in batches])
        ys = torch.stack([b[1] for b in batches])
        with autocast(cfg, device, task.autocast):
            out = fwd(params, buffers, xs)
            per = F.cross_entropy(out.flatten(0, 1).float(), ys.flatten(), reduction="none",
                                  label_smoothing=cfg["label_smoothing"]).view(ys.shape).mean(1)
        opt.zero_grad(set_to_none=True)
        per.sum().backward()  # runs are independent, so each gets exactly its own loss's gradient
        pairs = [(p.grad, mk) for p, mk in grads_masks if p.grad is not None]
        with torch.no_grad():
            mask_gradients([g for g, _ in pairs], [mk for _, mk in pairs])
        opt.step()
        loss_sums += per.detach() * ys.shape[1]
        corrects += (out.argmax(-1) == ys).sum(1)
        seen += ys.shape[1]
        on_step()
    with torch.no_grad():
        ssd = opt.state_dict()
        for i, r in enumerate(runs):
            for k, p in r.model.named_parameters():
                p.copy_(params[k][i])
            for k, b in r.model.named_buffers():
                b.copy_(buffers[k][i])
            st = {j: {k: (v[i].clone() if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in s.items()}
                  for j, s in ssd["state"].items()}
            r.optimizer.load_state_dict({"state": st, "param_groups": r.optimizer.state_dict()["param_groups"]})
            r.loss_sum, r.correct, r.seen = loss_sums[i], corrects[i], seen


def train_pack(specs: list[RunSpec], log=print, mode: str = "auto") -> list[dict]:
    """Train several runs in one process on one device; each writes exactly the files of a solo run.

    ``mode``: ``loop`` interleaves the runs' steps batch by batch (bitwise equal to solo runs; on a GPU
    it only saves process start-up and data loading); ``vmap`` trains same-architecture runs of a task
    that allows it (images) as one vectorised model; ``auto`` = ``vmap`` on CUDA for two or more such
    runs, else ``loop``.
    """
    if not specs:
        return []
    if mode not in PACK_MODES:
        raise PaibenchError(f"pack mode: {mode!r} is not allowed; expected one of {', '.join(PACK_MODES)}")
    cfg = specs[0].train
    for s in specs[1:]:
        if s.train != cfg:
            raise PaibenchError(f"pack: run {s.run_key!r} has a different training recipe than {specs[0].run_key!r}; "
                                f"expected one recipe per pack")
    # The run's thread count holds while it trains; a Python caller's own setting comes back afterwards.
    callers_threads = torch.get_num_threads()
    torch.set_num_threads(resolve_threads(specs[0].threads))
    try:
        return _train_pack(specs, cfg, log, mode)
    finally:
        torch.set_num_threads(callers_threads)


def _train_pack(specs: list[RunSpec], cfg: dict, log, mode: str) -> list[dict]:
    from paibench.data import load_prepared
    from paibench.tasks import task_for

    device = pick_device(cfg["device"])
    loaded: dict[str, tuple] = {}
    runs = []
    for s in specs:
        if s.data not in loaded:
            payload = load_prepared(s.data)
            task = task_for(payload["kind"])
            loaded[s.data] = (payload, task, task.load(payload, device, cfg))
        payload, task, data = loaded[s.data]
        tag = f"[{s.run_key}] " if len(specs) > 1 else ""
        runs.append(RunState(s, device, payload, data, task, (lambda msg, t=tag: log(t + msg))))
    task = runs[0].task
    if any(r.task is not task for r in runs):
        raise PaibenchError("pack: runs of different tasks (e.g. image and graph) cannot share a pack; expected "
                            "one dataset kind per pack")
    same_shape = len({(r.arch, r.width, json.dumps(r.arch_options or {}, sort_keys=True), r.spec.data)
                      for r in runs}) == 1
    use_vmap = task.vmap and len(runs) > 1 and (mode == "vmap" or (mode == "auto" and device.type == "cuda"))
    if use_vmap and not same_shape:
        if mode == "vmap":
            raise PaibenchError("pack mode 'vmap': runs differ in architecture, width or data; expected one "
                                "architecture per pack (or mode 'loop')")
        use_vmap = False
    if len(runs) > 1:
        log(f"packing {len(runs)} runs on {device_name(device)} (mode {'vmap' if use_vmap else 'loop'})")
    for epoch in range(min(r.start_epoch for r in runs), cfg["epochs"]):
        active = [r for r in runs if r.status == "ok" and r.start_epoch <= epoch]
        if not active:
            break
        t0 = time.perf_counter()
        for r in active:
            r.begin_epoch(epoch)
        data = active[0].data
        steps = task.steps_per_epoch(data, cfg["batch_size"])
        bar = Progress(steps, label=f"epoch {epoch + 1}/{cfg['epochs']}", rate_unit="examples",
                       per_step=task.examples_per_step(data, cfg["batch_size"]) * len(active))
        try:
            if use_vmap and len(active) > 1:
                _vmap_epoch(active, cfg, device, on_step=bar.update)
            else:
                for step in range(steps):
                    for r in active:
                        r.train_batch(step)
                    bar.update()
        finally:
            bar.close()
        # Each run's epoch time: its share of the pack's steps plus its own evaluation, so the runs' times add
        # up to the job's (tables sum them as the grid's training time).
        share = (time.perf_counter() - t0) / len(active)
        for r in active:
            r.end_epoch(share)
    results = [r.finish(len(runs), "vmap" if use_vmap else "loop") for r in runs]
    # Only now: a job killed while writing its runs' files (Snakemake then deletes every output of the job)
    # restarts each run from its final checkpoint, so a rerun trains no epoch again.
    for r in runs:
        r.drop_checkpoint()
    return results


def train_run(spec: RunSpec, log=print) -> dict:
    """Train one masked run, resuming from ``spec.checkpoint`` if it exists; writes metrics and epochs CSV."""
    return train_pack([spec], log=log, mode="loop")[0]


__all__ = ["PACK_MODES", "train_pack", "train_run"]
