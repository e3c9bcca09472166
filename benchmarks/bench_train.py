"""Reference-style training loop vs paibench's engine, and 1 vs N packed runs; prints a table (+ JSON).

The reference loop is written the way the PaI reference repositories train: a torch DataLoader over a
Dataset that decodes and augments one image at a time on the CPU (RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize, here with PIL/numpy since torchvision is not installed),
fp32, SGD, the mask multiplied into the weights after every step. Same model, mask, data, epochs and
recipe on both sides.

GPU (the issue's goal):
  python benchmarks/bench_train.py --device cuda --data-dir ../shared/data/cifar10-jpeg --arch vgg16 \
      --epochs 10 --pack 8 --pack-arch resnet20 --out results/benchmarks/train_gpu
CPU (small, minutes): see results/benchmarks/train_cpu.md for the exact command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from paibench.data import DATASETS, load_prepared, save_prepared
from paibench.pruning import make_mask
from paibench.pruning.maskio import load_mask
from paibench.training import RunSpec, parse_train_config, resolve_threads, train_pack


class ReferenceDataset(torch.utils.data.Dataset):
    """Per-image CPU transforms as torchvision.transforms would apply them (PIL image in, tensor out)."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, mean, std, pad: int, flip: bool, train: bool):
        from PIL import Image

        self.images = [Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy()) for img in x_uint8]
        self.y, self.pad, self.flip, self.train = y.tolist(), pad, flip, train
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image, ImageOps

        img = self.images[i]
        if self.train and self.pad:  # RandomCrop(size, padding=pad): zero padding, then a random window
            w, h = img.size
            img = ImageOps.expand(img, border=self.pad, fill=0)
            left, top = np.random.randint(0, 2 * self.pad + 1, size=2)
            img = img.crop((left, top, left + w, top + h))
        if self.train and self.flip and np.random.rand() < 0.5:  # RandomHorizontalFlip
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.asarray(img, dtype=np.float32) / 255.0  # ToTensor
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy((arr - self.mean) / self.std), self.y[i]  # Normalize


def reference_train(payload, mask_file, arch, width, cfg, device, workers):
    from paibench.data import info_from_payload
    from paibench.models import build_model, prunable_parameters

    info = info_from_payload(payload)
    model = build_model(arch, info, width, {}, seed=0).to(device)
    masks, _ = load_mask(mask_file)
    params = prunable_parameters(model)
    masks = {n: m.to(device=device, dtype=torch.float32) for n, m in masks.items()}
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"],
                          nesterov=cfg["nesterov"])
    aug = payload.get("augment", {})
    mean, std = payload["mean"].tolist(), payload["std"].tolist()
    train = ReferenceDataset(payload["x_train"], payload["y_train"], mean, std, aug.get("crop_padding", 0),
                             aug.get("flip", False), True)
    test = ReferenceDataset(payload["x_test"], payload["y_test"], mean, std, 0, False, False)
    kw = {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": workers > 0}
    train_loader = torch.utils.data.DataLoader(train, batch_size=cfg["batch_size"], shuffle=True, **kw)
    test_loader = torch.utils.data.DataLoader(test, batch_size=cfg["batch_size"], shuffle=False, **kw)
    epoch_times, acc = [], None
    for epoch in range(cfg["epochs"]):
        from paibench.training import lr_at

        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, epoch)
        t0 = time.perf_counter()
        model.train()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for n, m in masks.items():
                    params[n].mul_(m)
            loss.item()  # the reference loops log the running loss every step
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_times.append(time.perf_counter() - t0)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
        acc = correct / len(test)
    return epoch_times, acc


def engine_train(data_file, masks, arch, width, cfg, tmp, tag, threads, mode="auto"):
    specs = [RunSpec(data=str(data_file), mask=str(m), out_dir=str(tmp / tag / str(i)),
                     checkpoint=str(tmp / tag / f"ck{i}.pt"), run_key=f"bench/{tag}/{i}", train=cfg,
                     dataset="", arch=arch, width=width, arch_options={}, seed=i, threads=threads)
             for i, m in enumerate(masks)]
    t0 = time.perf_counter()
    results = train_pack(specs, log=lambda *_: None, mode=mode)
    total = time.perf_counter() - t0
    epochs = [[float(r.split(",")[-1]) for r in (Path(s.out_dir) / "epochs.csv").read_text().splitlines()[1:]]
              for s in specs]
    # Each epoch's "seconds" includes that epoch's evaluation; the first epoch includes compilation/warm-up.
    return {"epoch_s": epochs[0], "total_s": total, "acc": [r["final_test_acc"] for r in results]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg"))
    p.add_argument("--max-per-class", type=int, default=0, help="imagefolder max_per_class (0: all)")
    p.add_argument("--arch", default="vgg16")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--pack-arch", default="resnet20")
    p.add_argument("--pack-width", type=float, default=1.0)
    p.add_argument("--pack", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--compression", type=float, default=10.0)
    p.add_argument("--method", default="erk")
    p.add_argument("--workers", type=int, default=-1, help="DataLoader workers of the reference loop (-1: cores - 1)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile in the engine")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--out", default="", help="write OUT.md and OUT.json")
    args = p.parse_args(argv)
    torch.set_num_threads(resolve_threads(args.threads))
    device = torch.device(args.device)
    workers = max(0, (os.cpu_count() or 1) - 1) if args.workers < 0 else args.workers
    tmp = Path(tempfile.mkdtemp(prefix="paibench-bench-"))
    spec = DATASETS.get("imagefolder")
    t0 = time.perf_counter()
    payload = spec.prepare(spec.parse_options({"path": args.data_dir, "max_per_class": args.max_per_class}), tmp)
    data_file = tmp / "data.pt"
    save_prepared(payload, data_file)
    payload = load_prepared(data_file)
    prep_s = time.perf_counter() - t0
    n_train = len(payload["y_train"])
    # Same recipe both sides; no milestones inside a short run.
    cfg = parse_train_config({"epochs": args.epochs, "batch_size": args.batch_size, "lr": 0.05, "momentum": 0.9,
                              "nesterov": False, "weight_decay": 5e-4, "schedule": "constant", "device": args.device,
                              "compile": args.compile})
    dataset = payload["name"]

    def mask(arch, width, seed):
        path = tmp / f"{arch}-{seed}.safetensors"
        make_mask("imagefolder", arch, args.method, args.compression, seed, str(path), width=width, payload=payload)
        return path

    rows, res = [], {}
    m0 = mask(args.arch, args.width, 0)
    if not args.skip_reference:
        ref_times, ref_acc = reference_train(payload, m0, args.arch, args.width, cfg, device, workers)
        res["reference"] = {"epoch_s": ref_times, "acc": ref_acc}
    eng = engine_train(data_file, [m0], args.arch, args.width, cfg, tmp, "engine", args.threads)
    res["engine"] = eng
    pack_masks = [mask(args.pack_arch, args.pack_width, s) for s in range(args.pack)]
    one = engine_train(data_file, pack_masks[:1], args.pack_arch, args.pack_width, cfg, tmp, "one", args.threads)
    packed = engine_train(data_file, pack_masks, args.pack_arch, args.pack_width, cfg, tmp, "pack", args.threads)
    res["pack1"], res["packN"] = one, packed

    def last(times):  # steady-state epoch: the last one (the first carries warm-up/compilation)
        return times[-1]

    if "reference" in res:
        r = res["reference"]
        rows.append((f"reference loop ({args.arch} w{args.width:g})", n_train / last(r["epoch_s"]), last(r["epoch_s"]),
                     f"{100 * r['acc']:.2f}", "1.00x"))
    e = res["engine"]
    speed = (last(res["reference"]["epoch_s"]) / last(e["epoch_s"])) if "reference" in res else float("nan")
    rows.append((f"paibench engine ({args.arch} w{args.width:g})", n_train / last(e["epoch_s"]), last(e["epoch_s"]),
                 f"{100 * e['acc'][0]:.2f}", f"{speed:.2f}x vs reference"))
    one_tp = n_train * args.epochs / one["total_s"]
    pack_tp = n_train * args.epochs * args.pack / packed["total_s"]
    rows.append((f"1 run ({args.pack_arch} w{args.pack_width:g})", one_tp, one["total_s"] / args.epochs,
                 f"{100 * one['acc'][0]:.2f}", "1.00x"))
    accs = packed["acc"]
    rows.append((f"{args.pack} packed runs ({args.pack_arch} w{args.pack_width:g})", pack_tp,
                 packed["total_s"] / args.epochs, f"{100 * np.mean(accs):.2f} (mean of {args.pack})",
                 f"{pack_tp / one_tp:.2f}x aggregate vs 1 run"))
    hw = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or platform.machine(),
          "nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
          "python": platform.python_version(), "reference_workers": workers}
    head = ["setting", "images/s", "epoch s", "final test acc %", "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, ips, ep, acc, ratio in rows:
        lines.append(f"| {name} | {ips:.0f} | {ep:.2f} | {acc} | {ratio} |")
    table = "\n".join(lines)
    note = (f"{dataset}: {n_train} train / {len(payload['y_test'])} test images (prepared in {prep_s:.1f}s), "
            f"{args.epochs} epochs, batch {args.batch_size}, SGD lr 0.05 momentum 0.9 wd 5e-4, "
            f"{args.method} mask at {args.compression:g}x. Single-run rows: images/s and epoch time of the last "
            f"epoch's training (engine epoch time includes its evaluation). Pack rows: wall time of the whole "
            f"train_pack call (setup, all epochs, evaluation, output files) per epoch; images/s summed over runs.")
    print(table)
    print(note)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:])
        out.with_suffix(".json").write_text(json.dumps({"command": cmd, "hardware": hw, "results": res,
                                                        "rows": rows}, indent=2, default=float) + "\n")
        out.with_suffix(".md").write_text(f"# Training benchmark ({args.device})\n\nCommand: `{cmd}`\n\n"
                                          f"Hardware: {json.dumps(hw)}\n\n{table}\n\n{note}\n")


if __name__ == "__main__":
    main()
