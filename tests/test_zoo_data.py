"""tinyimagenet and ogbn-arxiv on tiny archives built here (no download), and the OGB evaluator hook."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from paibench.data import DATASETS, tinyimagenet
from paibench.errors import PaibenchError

WNIDS = ("n02", "n01", "n03")  # wnids.txt order differs from the sorted class order on purpose


def _jpeg(color, mode="RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (64, 64), color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def make_tiny_zip(path: Path, per_class: int = 3, val_per_class: int = 2) -> Path:
    """The official layout: train/<wnid>/images/*.JPEG, val/images/*.JPEG + val_annotations.txt, test/."""
    annotations = []
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "\n".join(WNIDS) + "\n")
        for c, w in enumerate(WNIDS):
            for k in range(per_class):
                zf.writestr(f"tiny-imagenet-200/train/{w}/images/{w}_{k}.JPEG", _jpeg((60 * c, 0, 0)))
            zf.writestr(f"tiny-imagenet-200/train/{w}/{w}_boxes.txt", "")
        i = 0
        for c, w in reversed(list(enumerate(WNIDS))):  # val files are not grouped by class
            for _ in range(val_per_class):
                gray = i == 0  # the real archive has a few grayscale JPEGs
                zf.writestr(f"tiny-imagenet-200/val/images/val_{i}.JPEG", _jpeg(60 * c if gray else (60 * c, 0, 0), "L" if gray else "RGB"))
                annotations.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
                i += 1
        zf.writestr("tiny-imagenet-200/val/val_annotations.txt", "\n".join(annotations) + "\n")
        zf.writestr("tiny-imagenet-200/test/images/test_0.JPEG", _jpeg((1, 2, 3)))
    return path


def test_tinyimagenet_refolds_val_by_annotations(tmp_path):
    classes, x_train, y_train, x_val, y_val = tinyimagenet.read_archive(make_tiny_zip(tmp_path / "t.zip"))
    assert classes == ["n01", "n02", "n03"]  # sorted wnids = ImageFolder order
    assert x_train.shape == (9, 3, 64, 64) and x_train.dtype == np.uint8
    # training label follows the folder: red channel encodes the wnids.txt position (n02 -> 0, n01 -> 60, n03 -> 120)
    red = {0: 60, 1: 0, 2: 120}
    assert all(abs(int(x[0, 32, 32]) - red[int(y)]) <= 3 for x, y in zip(x_train, y_train))
    assert x_val.shape == (6, 3, 64, 64)
    assert sorted(y_val.tolist()) == [0, 0, 1, 1, 2, 2]
    assert all(abs(int(x[0, 32, 32]) - red[int(y)]) <= 3 for x, y in zip(x_val, y_val))
    assert (x_val[:, 0] == x_val[:, 1]).all(axis=(1, 2)).sum() >= 1  # the grayscale image became RGB


def test_tinyimagenet_max_per_class(tmp_path):
    _, x_train, y_train, _, _ = tinyimagenet.read_archive(make_tiny_zip(tmp_path / "t.zip"), max_per_class=2)
    assert np.bincount(y_train).tolist() == [2, 2, 2]


def test_tinyimagenet_checksummed_fetch(tmp_path, monkeypatch):
    archive = make_tiny_zip(tmp_path / "served.zip")
    monkeypatch.setattr(tinyimagenet, "URL", archive.resolve().as_uri())  # file:// stands in for the server
    monkeypatch.setattr(tinyimagenet, "MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    spec = DATASETS.get("tinyimagenet")
    payload = spec.prepare(spec.parse_options({}), tmp_path / "raw")
    assert (tmp_path / "raw" / "tiny-imagenet-200.zip").read_bytes() == archive.read_bytes()
    assert payload["num_classes"] == 3 and payload["x_train"].shape == (9, 3, 64, 64)
    assert payload["x_test"].shape == (6, 3, 64, 64) and payload["augment"] == {"crop_padding": 4, "flip": True}

    monkeypatch.setattr(tinyimagenet, "MD5", "0" * 32)  # the cached file is now "corrupt": removed, refetched, rejected
    with pytest.raises(PaibenchError, match="could not fetch"):
        spec.prepare(spec.parse_options({}), tmp_path / "raw")
    assert not (tmp_path / "raw" / "tiny-imagenet-200.zip").exists()
    assert not (tmp_path / "raw" / "tiny-imagenet-200.zip.part").exists()


def test_tinyimagenet_pinned_checksum():
    assert tinyimagenet.MD5 == "90528d7ca1a48142e341f4ef8d21d0de"
    assert tinyimagenet.URL == "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def make_fake_arxiv(root: Path, n: int = 12, features: int = 4, classes: int = 3) -> None:
    """ogbn_arxiv/ in the official CSV layout (raw/*.csv.gz, split/time/*.csv.gz, RELEASE_v1.txt)."""
    rng = np.random.default_rng(0)
    base = root / "ogbn_arxiv"
    (base / "raw").mkdir(parents=True)
    (base / "split" / "time").mkdir(parents=True)
    (base / "RELEASE_v1.txt").write_text("v1")

    def write(path, rows):
        with gzip.open(path, "wt") as fh:
            fh.write("\n".join(",".join(str(v) for v in r) for r in rows) + "\n")

    edges = [(i, (i + 1) % n) for i in range(n)] + [(0, 5), (5, 0), (3, 3)]  # directed ring, one reciprocal pair, one loop
    write(base / "raw" / "edge.csv.gz", edges)
    write(base / "raw" / "node-feat.csv.gz", rng.normal(size=(n, features)).round(4).tolist())
    write(base / "raw" / "node-label.csv.gz", [[i % classes] for i in range(n)])
    write(base / "raw" / "node_year.csv.gz", [[2015] for _ in range(n)])
    write(base / "raw" / "num-node-list.csv.gz", [[n]])
    write(base / "raw" / "num-edge-list.csv.gz", [[len(edges)]])
    write(base / "split" / "time" / "train.csv.gz", [[i] for i in range(6)])
    write(base / "split" / "time" / "valid.csv.gz", [[i] for i in range(6, 9)])
    write(base / "split" / "time" / "test.csv.gz", [[i] for i in range(9, n)])


def test_ogbn_arxiv_payload_and_reload(tmp_path):
    make_fake_arxiv(tmp_path / "src")
    spec = DATASETS.get("ogbn-arxiv")
    opts = spec.parse_options({"root": str(tmp_path / "src")})
    payload = spec.prepare(opts, tmp_path / "raw")
    ei = payload["edge_index"]
    pairs = set(map(tuple, ei.t().tolist()))
    assert all((b, a) in pairs for a, b in pairs)  # symmetric
    assert all(a != b for a, b in pairs) and len(pairs) == ei.shape[1]  # no self-loops, no duplicates
    assert len(pairs) == 2 * 13  # 12 ring edges + (0, 5), both directions
    assert [int(payload[f"{k}_mask"].sum()) for k in ("train", "val", "test")] == [6, 3, 3]
    assert payload["evaluator"] == "ogbn-arxiv" and payload["x"].dtype == torch.float32
    # A second prepare finds ogb's processed cache, which torch's weights_only load cannot read; it must still work.
    again = spec.prepare(opts, tmp_path / "raw")
    assert torch.equal(again["edge_index"], ei) and torch.equal(again["x"], payload["x"])


def test_ogbn_arxiv_root_without_release_file_is_refused(tmp_path):
    from paibench.errors import PaibenchError

    make_fake_arxiv(tmp_path / "src")
    (tmp_path / "src" / "ogbn_arxiv" / "RELEASE_v1.txt").unlink()
    spec = DATASETS.get("ogbn-arxiv")
    with pytest.raises(PaibenchError, match="RELEASE_v1.txt"):
        spec.prepare(spec.parse_options({"root": str(tmp_path / "src")}), tmp_path / "raw")


def test_graph_accuracy_uses_ogb_evaluator(monkeypatch):
    from ogb.nodeproppred import Evaluator

    from paibench.tasks import node as training

    calls = []
    original = Evaluator.eval

    def spy(self, input_dict):
        calls.append(self.name)
        return original(self, input_dict)

    monkeypatch.setattr(Evaluator, "eval", spy)
    n = 6
    payload = {"x": torch.eye(n), "y": torch.tensor([0, 1, 2, 0, 1, 2]),
               "edge_index": torch.tensor([[0, 1], [1, 0]]), "evaluator": "ogbn-arxiv",
               **{f"{k}_mask": torch.tensor([i % 3 == j for i in range(n)]) for j, k in enumerate(("train", "val", "test"))}}
    data = training.GraphData(payload, torch.device("cpu"))

    class Fixed(torch.nn.Module):
        def forward(self, x, adj):
            return torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 0, 1, 0]), 3).float()

    res = training.evaluate_graph(Fixed(), data)
    assert calls == ["ogbn-arxiv"] * 3
    assert res["train_acc"] == 1.0 and res["val_acc"] == 1.0 and res["test_acc"] == 0.0
