"""The SASRec network in PyTorch (training only; imported lazily by ``recctl.models.sasrec``).

Importing this module imports torch, so only :class:`~recctl.models.sasrec.SASRecModel`
imports it, and only inside methods that train. Inference runs the same maths in numpy
(``recctl.models._sasrec_numpy``), so a pickled model answers without torch.

Layout (must match the numpy forward pass parameter by parameter):

* ``item_emb``  (n_items + 1, d) embedding; row 0 is padding.
* ``feat_emb``  (n_features, d), optional; an item's vector is ``item_emb + F_norm @ feat_emb``
  where ``F_norm`` is the row-normalised item-feature matrix.
* ``pos_emb``   (max_len, d) learned positions, right-aligned (the latest event is ``max_len - 1``).
* ``blocks.{i}``: pre-LayerNorm causal self-attention + ReLU feed-forward, with residuals.
* ``final_norm``: LayerNorm applied before scoring against the item table.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LN_EPS", "SASRecNet", "attention_mask"]

#: LayerNorm epsilon shared with the numpy forward pass
LN_EPS = 1e-6


def attention_mask(seq: torch.Tensor) -> torch.Tensor:
    """Boolean (B, 1, L, L) mask: query ``i`` may see key ``j`` when ``j <= i`` and ``j`` is real.

    A query always sees itself, so a padding query (whose keys are all padding) has one
    allowed key instead of none: softmax over an empty set would give NaN.
    """
    length = seq.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
    valid_key = (seq > 0)[:, None, None, :]
    diag = torch.eye(length, dtype=torch.bool, device=seq.device)
    return (causal & valid_key) | diag


class _Block(nn.Module):
    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.ff1 = nn.Linear(hidden, hidden)
        self.ff2 = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """One block; with ``last_only`` only the latest position is computed (queries, output)."""
        b, length, d = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).split(d, dim=-1)
        if last_only:
            # scoring reads only the latest position: keys and values still span the sequence
            q, x, mask = q[:, -1:], x[:, -1:], mask[:, :, -1:]
        q, k, v = (t.reshape(b, -1, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        att = att.transpose(1, 2).reshape(b, -1, d)
        x = x + F.dropout(self.out(att), self.dropout, self.training)
        h = self.norm2(x)
        h = self.ff2(F.dropout(F.relu(self.ff1(h)), self.dropout, self.training))
        return x + F.dropout(h, self.dropout, self.training)


class SASRecNet(nn.Module):
    """Self-attentive sequential recommender (Kang & McAuley, 2018), pre-LayerNorm variant.

    Parameters
    ----------
    n_items
        Number of real items; item ``i`` is embedded at row ``i + 1`` (row 0 is padding).
    max_len
        Sequence length (number of learned positions).
    hidden, n_heads, n_blocks, dropout
        Transformer sizes.
    item_features
        Optional (n_items x n_features) CSR; its rows are normalised to sum to one, so an
        item's feature vector is the mean of its feature embeddings.
    """

    def __init__(
        self,
        n_items: int,
        max_len: int,
        hidden: int,
        n_heads: int,
        n_blocks: int,
        dropout: float,
        item_features: sp.csr_matrix | None = None,
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.dropout = dropout
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, n_heads, dropout) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(hidden, eps=LN_EPS)
        self.features: torch.Tensor | None = None
        if item_features is not None:
            coo = item_features.tocoo()
            self.features = torch.sparse_coo_tensor(
                torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)),
                torch.from_numpy(coo.data.astype(np.float32)),
                coo.shape,
                check_invariants=True,
            ).coalesce()
            self.feat_emb = nn.Parameter(torch.empty(item_features.shape[1], hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small normal initialisation (std 1/sqrt(d)) for embeddings, PyTorch defaults elsewhere."""
        std = 1.0 / math.sqrt(self.hidden)
        nn.init.normal_(self.item_emb.weight, std=std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        nn.init.normal_(self.pos_emb.weight, std=std)
        if self.features is not None:
            nn.init.normal_(self.feat_emb, std=std)

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, d) item vectors, padding row included (features added when present)."""
        table = self.item_emb.weight
        if self.features is None:
            return table
        feat = torch.sparse.mm(self.features, self.feat_emb)
        return torch.cat([table[:1], table[1:] + feat], dim=0)

    def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Hidden states (B, L, d) for left-padded item sequences ``seq`` (0 = padding).

        With ``last_only`` the last block computes the latest position only and the result is
        (B, d): what scoring needs, at a fraction of the last block's cost.
        """
        if table is None:
            table = self.item_table()
        length = seq.shape[1]
        positions = self.pos_emb.weight[-length:]
        x = F.embedding(seq, table) * math.sqrt(self.hidden) + positions
        keep = (seq > 0).unsqueeze(-1).to(x.dtype)
        x = F.dropout(x, self.dropout, self.training) * keep
        mask = attention_mask(seq)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if last_only and i == last:
                return self.final_norm(block(x, mask, last_only=True)[:, -1])
            x = block(x, mask) * keep
        return self.final_norm(x)

    @classmethod
    def from_numpy_weights(cls, weights: dict[str, np.ndarray], n_heads: int, dropout: float = 0.0) -> SASRecNet:
        """Rebuild an eval-mode network from :meth:`numpy_weights` output (for scoring).

        Item features are already folded into ``weights["item_table"]``, which callers pass
        to :meth:`forward` as ``table``; the rebuilt network has no feature matrix.
        """
        n_rows, hidden = weights["item_table"].shape
        max_len = weights["pos_emb.weight"].shape[0]
        n_blocks = len({name.split(".")[1] for name in weights if name.startswith("blocks.")})
        with torch.random.fork_rng(devices=[]):  # the throwaway initialisation must not move the caller's RNG
            net = cls(n_rows - 1, max_len, hidden, n_heads, n_blocks, dropout)
        state = {k: torch.from_numpy(v) for k, v in weights.items() if k not in ("item_table", "feat_emb")}
        net.load_state_dict(state)
        return net.eval()

    def numpy_weights(self) -> dict[str, np.ndarray]:
        """The state dict as numpy arrays, plus ``item_table`` (features folded in).

        The numpy forward pass needs only ``item_table``, ``pos_emb.weight``, the blocks and
        ``final_norm``; the raw ``item_emb.weight`` / ``feat_emb`` are kept so training can
        resume from a pickled model.
        """
        with torch.no_grad():
            out = {name: p.detach().cpu().numpy().copy() for name, p in self.state_dict().items()}
            out["item_table"] = self.item_table().detach().cpu().numpy().copy()
        return out
