"""Node classification on one graph (Planetoid, OGBN-ArXiv, SBM): full-graph steps with the loss on the
training nodes, accuracy per split (the OGB Evaluator where the dataset names one), model selection on
validation."""

from __future__ import annotations

from paibench.lazy import F, torch
from paibench.tasks.base import Task


def prepare_graph(payload: dict, device):
    """(features, normalised adjacency) on the device: the one place a graph's adjacency is prepared."""
    from paibench.models.gnn import normalized_adjacency

    x = payload["x"].to(device)
    return x, normalized_adjacency(payload["edge_index"].to(device), x.shape[0])


# feature_product: auto takes the sparse path (features and adjacency as CSR) on the CPU at or below this share of
# nonzero features (Cora 1.3 %, CiteSeer 0.9 %; OGBN-ArXiv's and SBM's are dense). See benchmarks/bench_graph.py.
SPARSE_FEATURES_MAX_DENSITY = 0.1


def use_sparse_features(x, device, mode: str) -> bool:
    if mode == "auto":
        return device.type == "cpu" and x.numel() > 0 and float((x != 0).float().mean()) <= SPARSE_FEATURES_MAX_DENSITY
    return mode == "sparse"


class GraphData:
    def __init__(self, payload: dict, device, feature_product: str = "auto"):
        from paibench.models.gnn import SparseAdjacency, SparseFeatures

        self.device = device
        self.x, self.adj = prepare_graph(payload, device)
        if use_sparse_features(self.x, device, feature_product):
            # the sparse path: features and adjacency as CSR, built once (models.gnn)
            self.x, self.adj = SparseFeatures(self.x), SparseAdjacency(self.adj)
        self.y = payload["y"].to(device)
        # Each split's node indices and labels, once: indexing by them selects the same rows in the same order
        # as the boolean masks (bitwise the same losses and gradients) without a nonzero() per use.
        self.index = {k: torch.nonzero(payload[f"{k}_mask"].to(device)).squeeze(1) for k in ("train", "val", "test")}
        self.labels = {k: self.y[i] for k, i in self.index.items()}
        # e.g. "ogbn-arxiv": accuracy by ogb.nodeproppred.Evaluator (see paibench/data/ogbn_arxiv.py)
        self.evaluator = payload.get("evaluator")


def evaluate_graph(model, data: GraphData) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        out = model(data.x, data.adj).float()
        res = {}
        for split, i in data.index.items():
            logits, y = out[i], data.labels[split]
            res[f"{split}_loss"] = F.cross_entropy(logits, y).item()
            res[f"{split}_acc"] = (logits.argmax(1) == y).float().mean().item()
        if getattr(data, "evaluator", None):
            from ogb.nodeproppred import Evaluator

            ogb_eval = Evaluator(data.evaluator)
            pred = out.argmax(1, keepdim=True)
            for split, i in data.index.items():
                res[f"{split}_acc"] = float(ogb_eval.eval({"y_true": data.labels[split].view(-1, 1),
                                                           "y_pred": pred[i]})["acc"])
    return res


class NodeClassification(Task):
    kind = "graph"
    autocast = False  # sparse adjacency products stay in fp32
    channels_last = False
    vmap = False
    seeded_forward = True  # dropout of a full-graph step draws from the run's own RNG state
    selects_on_validation = True  # Planetoid / OGB protocol: the epoch with the best validation accuracy

    def load(self, payload, device, cfg=None):
        # the dataset's own split has a validation set: val_fraction does not apply
        return GraphData(payload, device, (cfg or {}).get("feature_product", "auto"))

    def describe(self, data) -> str:
        from paibench.models.gnn import SparseFeatures

        sparse = (f" (sparse product, {100 * data.x.density:.1f} % nonzero)"
                  if isinstance(data.x, SparseFeatures) else "")
        return (f"graph of {data.x.shape[0]} nodes, {data.x.shape[1]} features{sparse}, "
                f"{len(data.index['train'])} training nodes")

    def steps_per_epoch(self, data, batch_size):
        return 1

    def examples_per_step(self, data, batch_size):
        return len(data.index["train"])

    def batch(self, data, order, step, batch_size, generator, channels_last=False):
        return (data.x, data.adj), data.labels["train"], data.index["train"]

    def evaluate(self, model, data, cfg):
        ev = evaluate_graph(model, data)
        # train_acc: the whole training split in eval mode (the step's own accuracy is on dropped-out units)
        return {"train_acc": ev["train_acc"], "val_loss": ev["val_loss"], "val_acc": ev["val_acc"],
                "test_loss": ev["test_loss"], "test_acc": ev["test_acc"]}

    def evaluate_test(self, model, data, cfg):
        ev = evaluate_graph(model, data)
        return {"test_loss": ev["test_loss"], "test_acc": ev["test_acc"], "val_acc": ev["val_acc"]}

    def pruning_batches(self, payload, info, opts, generator, device):
        """The full graph; targets outside the training nodes are -100 (ignored by cross-entropy)."""
        x, adj = prepare_graph(payload, device)
        y = torch.where(payload["train_mask"], payload["y"], torch.full_like(payload["y"], -100)).to(device)

        def batches(n: int):
            for _ in range(n):
                yield (x, adj), y

        batches.per_epoch = 1
        return batches

    def example_input(self, info, batch=1, dtype=None, fill=1.0):
        """A graph of `batch` self-looped nodes."""
        dtype = torch.float32 if dtype is None else dtype
        shape = (batch, info.num_features)
        x = torch.full(shape, fill, dtype=dtype) if fill is not None else torch.randn(*shape, dtype=dtype)
        idx = torch.arange(batch)
        adj = torch.sparse_coo_tensor(torch.stack([idx, idx]), torch.ones(batch, dtype=dtype), (batch, batch)).coalesce()
        return (x, adj)

    def data_shape(self, payload):
        return tuple(payload["x"].shape)


NODE_CLASSIFICATION = NodeClassification()
