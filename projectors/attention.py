"""Multi-head scaled dot-product attention over a key padding mask, shared by the attention projectors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor | None,
    num_heads: int,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Attend ``query [B, Lq, H*d]`` to ``key``/``value [B, Lk, H*d]``; keys where ``key_mask [B, Lk]`` is
    False get exactly zero weight, so padding never reaches the output. Returns ``[B, Lq, H*d]``.

    Every row of ``key_mask`` needs at least one True entry (an all-masked row has no defined softmax).
    """
    batch, q_len, width = query.shape
    heads = [t.unflatten(-1, (num_heads, -1)).transpose(1, 2) for t in (query, key, value)]
    attn_mask = None if key_mask is None else key_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(*heads, attn_mask=attn_mask, dropout_p=dropout)
    return out.transpose(1, 2).reshape(batch, q_len, width)
