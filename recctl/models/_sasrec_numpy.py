"""SASRec inference in numpy: the serving path, which needs no torch.

The forward pass mirrors ``recctl.models._sasrec_torch.SASRecNet`` in eval mode (no dropout),
reading the weights from the dict :meth:`SASRecNet.numpy_weights` returns. A parity test
(``tests/models/test_sasrec.py``) checks both agree to float32 precision.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LN_EPS", "encode", "n_blocks", "sequence_vectors"]

#: LayerNorm epsilon; must equal ``_sasrec_torch.LN_EPS``
LN_EPS = 1e-6


def n_blocks(weights: dict[str, np.ndarray]) -> int:
    """Number of attention blocks stored in ``weights``."""
    return len({name.split(".")[1] for name in weights if name.startswith("blocks.")})


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * weight + bias


def _linear(x: np.ndarray, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def _attention(
    h: np.ndarray, weights: dict[str, np.ndarray], prefix: str, n_heads: int, bias: np.ndarray, last_only: bool
) -> np.ndarray:
    """Multi-head attention; ``bias`` is 0 where a key is allowed and -inf elsewhere."""
    b, length, d = h.shape
    dh = d // n_heads
    w, w_bias = weights[f"{prefix}.qkv.weight"], weights[f"{prefix}.qkv.bias"]
    kv = h @ w[d:].T + w_bias[d:]
    q_in = h[:, -1:] if last_only else h
    # the 1/sqrt(dh) scale goes on q (fewer multiplications than on the logits)
    q = (q_in @ w[:d].T + w_bias[:d]) * np.float32(1.0 / math.sqrt(dh))
    n_q = q.shape[1]
    q = q.reshape(b, n_q, n_heads, dh).transpose(0, 2, 1, 3)
    k, v = (kv[..., i * d : (i + 1) * d].reshape(b, length, n_heads, dh).transpose(0, 2, 1, 3) for i in range(2))
    logits = q @ k.transpose(0, 1, 3, 2)
    logits += bias[:, :, -n_q:] if last_only else bias
    logits -= logits.max(axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=-1, keepdims=True)
    out = (logits @ v).transpose(0, 2, 1, 3).reshape(b, n_q, d)
    return _linear(out, weights, f"{prefix}.out")


def encode(seq: np.ndarray, weights: dict[str, np.ndarray], n_heads: int, last_only: bool = False) -> np.ndarray:
    """Hidden states (B, L, d) for left-padded sequences of 1-based item rows (0 = padding).

    Parameters
    ----------
    seq
        int (B, L) array; item index ``i`` is written as ``i + 1``.
    weights
        :meth:`SASRecNet.numpy_weights` output.
    n_heads
        Attention heads the network was trained with.
    last_only
        Compute only the latest position in the last block and return (B, d): all that
        scoring needs.
    """
    table = weights["item_table"]
    d = table.shape[1]
    length = seq.shape[1]
    keep = (seq > 0)[..., None].astype(np.float32)
    x = table[seq] * np.float32(math.sqrt(d)) + weights["pos_emb.weight"][-length:]
    x = x * keep
    causal = np.tril(np.ones((length, length), dtype=bool))
    allowed = (causal & (seq > 0)[:, None, None, :]) | np.eye(length, dtype=bool)
    bias = np.where(allowed, np.float32(0.0), np.float32(-np.inf)).astype(np.float32)
    last = n_blocks(weights) - 1
    for i in range(last + 1):
        p = f"blocks.{i}"
        only = last_only and i == last
        h = _layer_norm(x, weights[f"{p}.norm1.weight"], weights[f"{p}.norm1.bias"])
        if only:
            x, keep = x[:, -1:], keep[:, -1:]
        x = x + _attention(h, weights, p, n_heads, bias, only)
        h = _layer_norm(x, weights[f"{p}.norm2.weight"], weights[f"{p}.norm2.bias"])
        x = (x + _linear(np.maximum(_linear(h, weights, f"{p}.ff1"), 0.0), weights, f"{p}.ff2")) * keep
    out = _layer_norm(x, weights["final_norm.weight"], weights["final_norm.bias"]).astype(np.float32)
    return out[:, -1] if last_only else out


def sequence_vectors(seq: np.ndarray, weights: dict[str, np.ndarray], n_heads: int) -> np.ndarray:
    """The (B, d) representation of each sequence: the hidden state at its latest position."""
    return encode(seq, weights, n_heads, last_only=True)
