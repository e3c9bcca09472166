"""GCN and GIN for full-batch node classification, written in plain torch (sparse adjacency matmul).

Defaults follow the OGB ogbn-arxiv GCN baseline (``examples/nodeproppred/arxiv/gnn.py``): 3 layers,
hidden 256, batch norm, ReLU, dropout 0.5. OGB has no GIN baseline for arxiv; GIN uses the same depth,
width and dropout, and a two-layer MLP per layer (Xu et al. 2019). Every weight matrix is an ``nn.Linear``
and therefore prunable like any linear layer. Init: Kaiming normal (fan-in) with zero biases.

Forward takes ``(x, adj)`` with ``adj`` the sparse symmetric-normalised adjacency with self-loops
(:func:`normalized_adjacency`). GIN needs the *sum* aggregation ``(1 + eps) h_i + sum_{j in N(i)} h_j``;
with eps = 0 (GIN-0) that is ``(A + I) h``, whose sparsity pattern is exactly that of ``adj``, so GIN
takes the same tensor and replaces its values by ones (:func:`sum_adjacency`). One input format serves
both models, the training loop and the effective-compression check (one self-looped node).

Bag-of-words features (Cora, CiteSeer: ~1 % nonzero) may come as :class:`SparseFeatures`, and then the adjacency
as :class:`SparseAdjacency` (the sparse path, ``train.feature_product``): the first layer multiplies the features
as a CSR matrix (:func:`feature_product`) and every layer the adjacency (:func:`adjacency_product`), each matrix
and its transpose built once. The same products up to float summation order.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from paibench.models.base import kaiming_init, scaled


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 as a coalesced sparse tensor (duplicate edges collapse to one)."""
    loops = torch.arange(num_nodes, device=edge_index.device)
    idx = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
    adj = torch.sparse_coo_tensor(idx, torch.ones(idx.shape[1], device=idx.device), (num_nodes, num_nodes)).coalesce()
    idx = adj.indices()
    vals = torch.ones(idx.shape[1], device=idx.device)
    deg = torch.zeros(num_nodes, device=idx.device).index_add_(0, idx[0], vals)
    inv = deg.pow(-0.5)
    return torch.sparse_coo_tensor(idx, inv[idx[0]] * vals * inv[idx[1]], (num_nodes, num_nodes)).coalesce()


def sum_adjacency(adj: torch.Tensor) -> torch.Tensor:
    """A + I (unweighted) from the normalised adjacency: same pattern, all values one."""
    adj = adj.coalesce()
    return torch.sparse_coo_tensor(adj.indices(), torch.ones_like(adj.values()), adj.shape).coalesce()


def _to_csr(m: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta": the products used here are tested
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return m.to_sparse_csr()


class _CSRMatmul(torch.autograd.Function):
    """M @ h for a constant CSR matrix M: the gradient of h is M^T g, from a stored CSR M^T (no transposition
    per step)."""

    @staticmethod
    def forward(ctx, h, m_csr, m_t_csr):
        ctx.save_for_backward(m_t_csr)
        return m_csr @ h.contiguous()

    @staticmethod
    def backward(ctx, grad_out):
        (m_t_csr,) = ctx.saved_tensors
        return m_t_csr @ grad_out.contiguous(), None, None


class CSRMatrix:
    """A constant matrix held as CSR twice, M and M^T, both built once per dataset; ``shape`` as the dense one's."""

    def __init__(self, m: torch.Tensor):
        self.shape = m.shape
        dense_or_coo = m.coalesce() if m.is_sparse else m
        self.csr = _to_csr(dense_or_coo)
        self.csr_t = _to_csr(dense_or_coo.t().coalesce() if m.is_sparse else dense_or_coo.t().contiguous())

    def matmul(self, h: torch.Tensor) -> torch.Tensor:
        return _CSRMatmul.apply(h, self.csr, self.csr_t)


class SparseFeatures(CSRMatrix):
    """Node features X as CSR (X for the forward product, X^T for the weight's gradient)."""

    def __init__(self, x: torch.Tensor):
        super().__init__(x)
        self.density = float((x != 0).float().mean()) if x.numel() else 0.0


class SparseAdjacency:
    """The sparse path's adjacency (``feature_product: sparse``): the normalised adjacency (GCN) and its sum
    form A + I (GIN) as CSRMatrix, built once per dataset instead of COO products (and, for GIN, a sum
    adjacency per forward). The same products up to float summation order."""

    def __init__(self, adj: torch.Tensor):
        self.normalized = CSRMatrix(adj)
        self.sum = CSRMatrix(sum_adjacency(adj))


def adjacency_product(adj, h: torch.Tensor) -> torch.Tensor:
    """``adj @ h`` for a sparse COO tensor or a CSRMatrix."""
    return adj.matmul(h) if isinstance(adj, CSRMatrix) else torch.sparse.mm(adj, h)


def feature_product(x, lin: nn.Linear) -> torch.Tensor:
    """``lin(x)`` without its bias, for dense features (``lin`` itself when it has none) or SparseFeatures."""
    if isinstance(x, SparseFeatures):
        return x.matmul(lin.weight.t())
    return lin(x) if lin.bias is None else F.linear(x, lin.weight)


class GCNLayer(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.lin = nn.Linear(cin, cout, bias=False)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, adj):
        return adjacency_product(adj, feature_product(x, self.lin)) + self.bias


class GCN(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: int = 256, layers: int = 3, dropout: float = 0.5):
        super().__init__()
        dims = [in_features] + [hidden] * (layers - 1) + [num_classes]
        self.convs = nn.ModuleList(GCNLayer(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(d) for d in dims[1:-1])
        self.dropout = dropout
        kaiming_init(self)

    def forward(self, x, adj):
        adj = adj.normalized if isinstance(adj, SparseAdjacency) else adj
        for i, conv in enumerate(self.convs):
            x = conv(x, adj)
            if i < len(self.norms):
                x = F.dropout(F.relu(self.norms[i](x)), self.dropout, self.training)
        return x


def build_gcn(info, width: float = 1.0, hidden: int = 256, layers: int = 3, dropout: float = 0.5):
    return GCN(info.num_features, info.num_classes, scaled(hidden, width), layers, dropout)


class GINLayer(nn.Module):
    """GIN-0: MLP((A + I) h) with a Linear-BN-ReLU-Linear MLP."""

    def __init__(self, cin: int, cout: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(cin, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.lin2 = nn.Linear(hidden, cout)

    def forward(self, x, sum_adj):
        if isinstance(x, SparseFeatures):  # lin1((A + I) X) = (A + I)(X W1^T) + b1: X stays sparse
            h = adjacency_product(sum_adj, feature_product(x, self.lin1)) + self.lin1.bias
        else:
            h = self.lin1(adjacency_product(sum_adj, x))
        return self.lin2(F.relu(self.bn(h)))


class GIN(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: int = 256, layers: int = 3, dropout: float = 0.5):
        super().__init__()
        dims = [in_features] + [hidden] * (layers - 1) + [num_classes]
        self.convs = nn.ModuleList(GINLayer(a, b, hidden) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(d) for d in dims[1:-1])
        self.dropout = dropout
        kaiming_init(self)

    def forward(self, x, adj):
        sum_adj = adj.sum if isinstance(adj, SparseAdjacency) else sum_adjacency(adj)
        for i, conv in enumerate(self.convs):
            x = conv(x, sum_adj)
            if i < len(self.norms):
                x = F.dropout(F.relu(self.norms[i](x)), self.dropout, self.training)
        return x


def build_gin(info, width: float = 1.0, hidden: int = 256, layers: int = 3, dropout: float = 0.5):
    return GIN(info.num_features, info.num_classes, scaled(hidden, width), layers, dropout)
