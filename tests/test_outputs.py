"""What a run shows and writes while and after it trains: start line, per-epoch lines and epochs.csv,
a progress bar only on terminals, TensorBoard scalars, top-5 accuracy, and multiply-accumulate counts."""

from __future__ import annotations

import csv
import io

import pytest
import torch

from paibench.data import save_prepared
from paibench.data.base import DatasetInfo, image_payload
from paibench.errors import PaibenchError
from paibench.progress import Progress
from paibench.pruning import make_mask
from paibench.training import RunSpec, parse_train_config, train_run


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _spec(tmp_path, data, mask, arch="resnet20", dataset="digits", **train):
    cfg = parse_train_config({"epochs": 3, "batch_size": 256, "lr": 0.05, **train})
    return RunSpec(data=str(data), mask=str(mask), out_dir=str(tmp_path / "run"), checkpoint=str(tmp_path / "ck.pt"),
                   run_key="t", train=cfg, dataset=dataset, arch=arch, width=0.25, arch_options={}, seed=0,
                   threads=1)


def test_progress_bar_draws_on_terminals_only():
    tty = _Tty()
    bar = Progress(10, label="epoch 1/3", per_step=128, rate_unit="img", stream=tty, min_interval=0.0)
    for _ in range(3):
        bar.update()
    text = tty.getvalue()
    assert text.startswith("\r") and "epoch 1/3" in text and "3/10 steps" in text and "img/s" in text
    assert "ETA" in text
    bar.close()
    assert tty.getvalue().endswith("\r")
    log = io.StringIO()  # a log file: no bar, no carriage returns
    quiet = Progress(10, stream=log, min_interval=0.0)
    quiet.update(10)
    quiet.close()
    assert log.getvalue() == ""
    sized = Progress(3 << 20, label="download x", unit="B", stream=_Tty(), min_interval=0.0)
    sized.update(1 << 20)
    assert "1.0 MiB/3.0 MiB" in sized.line()


@pytest.mark.parametrize("interval, rows", [(0, [1, 2, 3]), (30, [None, None, 3])])
def test_run_prints_start_line_and_one_line_per_epoch_and_grows_epochs_csv(tmp_path, digits_file, interval, rows):
    """epochs.csv is rewritten with each checkpoint: after every epoch with checkpoint_interval_s 0; in a run
    shorter than the interval, only after its last epoch."""
    mask = tmp_path / "m.safetensors"
    make_mask("digits", "resnet20", "random", 10, 0, str(mask), width=0.25)
    spec = _spec(tmp_path, digits_file, mask, checkpoint_interval_s=interval)
    lines, rows_seen = [], []

    def log(msg):
        lines.append(msg)
        if msg.startswith("epoch "):  # what a watcher of the running job sees at that moment
            path = tmp_path / "run" / "epochs.csv"
            rows_seen.append(len(list(csv.DictReader(io.StringIO(path.read_text())))) if path.exists() else None)

    train_run(spec, log=log)
    start = lines[0]
    assert start.startswith("start t: resnet20 on cpu:") and "parameters" in start and "prunable weights (10" in start
    assert f"mask {mask}" in start and "train /" in start and "test images" in start and "3 epochs" in start
    epoch_lines = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epoch_lines] == ["1/3", "2/3", "3/3"]
    assert all("test_acc=" in ln and "\r" not in ln for ln in epoch_lines)
    assert rows_seen == rows


def test_tensorboard_logs_every_epoch(tmp_path, digits_file):
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mask = tmp_path / "m.safetensors"
    make_mask("digits", "resnet20", "random", 10, 0, str(mask), width=0.25)
    metrics = train_run(_spec(tmp_path, digits_file, mask, epochs=2, tensorboard=True), log=lambda *_: None)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    acc = events.Scalars("test/acc")
    assert [e.step for e in acc] == [1, 2]
    assert acc[-1].value == pytest.approx(metrics["final_test_acc"], abs=1e-6)
    assert {"train/loss", "lr", "seconds"} <= set(events.Tags()["scalars"])


def test_tensorboard_without_the_package_is_refused_before_training(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(PaibenchError, match=r"^train.tensorboard: true is not allowed here; the 'tensorboard' package"):
        parse_train_config({"tensorboard": True})


def test_logging_options_change_no_seed(tmp_path, digits_file):
    from paibench.cli import content_run_key

    mask = tmp_path / "m.safetensors"
    make_mask("digits", "resnet20", "random", 10, 0, str(mask), width=0.25)
    keys = {content_run_key(str(mask), parse_train_config({"tensorboard": tb, "keep_checkpoint": kc}), "digits",
                            "resnet20", 0.25, {}, 0) for tb in (False, True) for kc in (False, True)}
    assert len(keys) == 1


def _hundred_classes(tmp_path):
    gen = torch.Generator().manual_seed(0)
    y_train = torch.arange(400) % 100
    y_test = torch.arange(200) % 100
    x_train = torch.randint(0, 256, (400, 3, 8, 8), generator=gen, dtype=torch.uint8)
    x_test = torch.randint(0, 256, (200, 3, 8, 8), generator=gen, dtype=torch.uint8)
    payload = image_payload("synthetic100", x_train, y_train, x_test, y_test, [str(i) for i in range(100)],
                            "synthetic", {})
    path = tmp_path / "s100.pt"
    save_prepared(payload, path)
    return payload, path


def test_top5_accuracy_for_100_classes(tmp_path):
    from paibench.tasks.image import ImageData, evaluate_images

    payload, path = _hundred_classes(tmp_path)
    data = ImageData(payload, torch.device("cpu"))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 100))
    cfg = parse_train_config({"eval_batch_size": 64})
    result = evaluate_images(model, data, cfg)
    with torch.no_grad():
        out = model(data.normalize(data.x_test))
    expected5 = (out.topk(5, 1).indices == data.y_test[:, None]).any(1).float().mean().item()
    assert result["top5_acc"] == pytest.approx(expected5) and result["acc"] <= result["top5_acc"]
    ten = {**payload, "num_classes": 10, "classes": list("0123456789"), "y_test": payload["y_test"] % 10}
    digits = ImageData(ten, torch.device("cpu"))
    assert "top5_acc" not in evaluate_images(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 10)),
                                             digits, cfg)
    # a run on it reports top-5 beside top-1, for the epoch it reports
    mask = tmp_path / "m.safetensors"
    make_mask("imagefolder", "resnet20", "random", 4, 0, str(mask), width=0.25, payload=payload)
    metrics = train_run(_spec(tmp_path, path, mask, dataset="imagefolder", epochs=2), log=lambda *_: None)
    assert metrics["top5_accuracy"] == metrics["final_test_top5_acc"] >= metrics["accuracy"]


def test_mask_statistics_count_multiply_accumulates(tmp_path):
    from paibench.estimate import forward_macs
    from paibench.pruning.maskio import load_mask

    out = tmp_path / "m.safetensors"
    stats = make_mask("cifar10", "vgg16", "erk", 100, 0, str(out))
    info = DatasetInfo("cifar10", "image", 10, 3, (32, 32), 0)
    assert stats["macs"] == forward_macs("vgg16", info, 1.0, {}) == 313_201_664  # VGG-16, CIFAR: 313.2 M
    masks, _ = load_mask(out)
    first = stats["layers"][0]
    assert first["macs"] == first["numel"] * 32 * 32 and first["macs_kept"] == first["kept"] * 32 * 32
    last = stats["layers"][-1]  # the classifier runs once per image
    assert last["macs_kept"] == int(masks[last["name"]].sum())
    assert stats["macs_kept"] == sum(layer["macs_kept"] for layer in stats["layers"])
    assert stats["macs_effective"] <= stats["macs_kept"] < stats["macs"]
