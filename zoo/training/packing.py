"""Padding-free packed batches: every example of a micro-batch in one row, attention kept inside each example.

A packed row concatenates the examples; position ids restart at 0 for each and ``cu_seq_lens`` (the
cumulative example lengths, as flash attention's varlen kernels take them) marks where each one starts.
For the forward of a packed row (:func:`packed_attention`), the language model's attention is
:func:`varlen_attention`, registered with transformers' ``AttentionInterface``: causal attention within each
example only, so the cost is the sum of squared example lengths instead of a padded batch's
``batch x longest^2``, and no token ever attends across an example boundary. On a GPU with half-precision
inputs it is one call to torch's varlen flash attention; elsewhere, one ``scaled_dot_product_attention`` per
example (the blocks on the diagonal of a block-diagonal causal mask, without computing the blocks off it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.training.config import TrainingError

VARLEN_ATTENTION = "zoo_varlen"


def cu_seq_lens(lengths: Sequence[int]) -> torch.Tensor:
    """``[0, l0, l0+l1, ...]`` as int32: where each packed example starts and the row's end."""
    return F.pad(torch.tensor(lengths, dtype=torch.int32).cumsum(0, dtype=torch.int32), (1, 0))


def varlen_kwargs(cu: torch.Tensor) -> dict[str, Any]:
    """The keyword arguments a transformers model forwards to its attention for a packed row."""
    longest = int((cu[1:] - cu[:-1]).max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def _flash_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu: torch.Tensor, longest: int,
                  scaling: float | None) -> torch.Tensor:
    from torch.nn.attention.varlen import varlen_attn

    # [1, heads, tokens, dim] -> [tokens, heads, dim], the varlen layout; causal is window (-1, 0)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    return varlen_attn(q, k, v, cu, cu, longest, longest, scale=scaling, window_size=(-1, 0)).unsqueeze(0)


def _per_example(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu: torch.Tensor, scaling: float | None,
                 dropout: float) -> torch.Tensor:
    # split, not slicing: its backward is one concatenation, where each slice's would add into a zeroed full copy
    lengths = (cu[1:] - cu[:-1]).tolist()
    parts = [
        F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling)
        for q, k, v in zip(*(t.split(lengths, dim=2) for t in (query, key, value)), strict=True)
    ]
    return torch.cat(parts, dim=2).transpose(1, 2)


def varlen_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention within each example of one packed row (``query`` ``[1, heads, tokens, dim]``), as a
    transformers attention function: returns ``[1, tokens, heads, dim]`` and no weights."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or attention_mask is not None:
        raise TrainingError("the packed attention takes one packed row with cu_seq_lens_q and no attention mask; "
                            "it is set only for the forward of a packed batch")
    for feature in ("sliding_window", "softcap"):
        if kwargs.get(feature) is not None or getattr(module, feature, None) is not None:
            raise TrainingError(f"packed batching does not support attention with {feature}; use batching='padded' "
                                "or 'length-grouped'")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    dropout = dropout if module.training else 0.0
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) and dropout == 0.0:
        return _flash_varlen(query, key, value, cu, kwargs["max_length_q"], scaling), None
    return _per_example(query, key, value, cu, scaling, dropout), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention)


@contextmanager
def packed_attention(language_model: nn.Module) -> Iterator[None]:
    """While inside, ``language_model`` attends with :func:`varlen_attention`; its own implementation after.

    A backbone whose attention is not a transformers ``AttentionInterface`` function cannot switch, and
    packed batching is refused for it (its attention would cross example boundaries).
    """
    _register()
    before = language_model.config._attn_implementation
    language_model.set_attn_implementation(VARLEN_ATTENTION)
    if language_model.config._attn_implementation != VARLEN_ATTENTION:
        raise TrainingError(f"packed batching needs a language model whose attention can be switched "
                            f"(transformers' AttentionInterface); {type(language_model).__name__} cannot: use "
                            "batching='padded' or 'length-grouped'")
    try:
        yield
    finally:
        language_model.set_attn_implementation(before)
