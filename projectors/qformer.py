"""Q-Former projectors: BLIP-2's learned queries (also MolCA's), and SALMONN's window-level variant.

The Q-Former follows LAVIS ``lavis/models/blip2_models/Qformer.py`` as BLIP-2 uses it for queries only:
the learned query tokens pass ``LayerNorm`` + dropout, then BERT-style post-norm layers, each with
self-attention among the queries, cross-attention to the encoder tokens on every
``cross_attention_every``-th layer (layer ``i`` has it when ``i % cross_attention_every == 0``; BLIP-2: 2,
SALMONN: 1), and the query feed-forward (``intermediate_query``/``output_query``). Before it, a
``LayerNorm`` on the encoder tokens (BLIP-2's ``ln_vision``, SALMONN's ``ln_speech``); after it, a
``Linear`` to the backbone width (BLIP-2's ``language_projection``). The layers are written here in plain
torch, not taken from ``transformers``' ``Blip2QFormerModel``, so padded encoder tokens are masked with the
same attention helper as the other projectors; parameter names are ours, not LAVIS checkpoint keys.

The math is that of transformers' ``Blip2QFormerModel`` too (queries only: LayerNorm eps 1e-12, exact GELU,
cross-attention on layers ``i % cross_attention_frequency == 0``), so transformers' BLIP-2 checkpoints map onto
it by renaming (``zoo.converters.blip2``). Two fields match that layout without changing the default: there the
encoder-token LayerNorm is the vision tower's own ``post_layernorm`` (``input_norm: false``), and the learned
queries are stored as ``[1, num_queries, hidden_size]`` (``batched_queries: true``).

InstructBLIP's Q-Former also reads the instruction (``text_vocab_size > 0``): its tokens get BERT word + position
embeddings and share the queries' LayerNorm, queries and text attend to each other in self-attention, only the
queries cross-attend to the encoder tokens, the text positions have their own feed-forward (``intermediate``/
``output`` in transformers), and only the query outputs leave the projector. The processor gives the text as
``text_ids``/``text_mask`` (``zoo.processing``); with ``text_vocab_size: 0`` (the default) nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from projectors.attention import masked_attention
from projectors.base import Projector, ProjectorConfig, check_projector_input
from projectors.masking import left_align, prefix_mask, require_nonempty

_BERT_LN_EPS = 1e-12
_BERT_INIT_STD = 0.02


def _check_qformer_fields(config: Any, projector: str) -> None:
    """Validate the fields both Q-Former configs share; messages name the projector and the field."""
    for name in ("num_layers", "num_heads", "hidden_size", "intermediate_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"{projector} field {name!r} must be >= 1, got {getattr(config, name)}")
    if config.hidden_size % config.num_heads:
        raise ValueError(
            f"{projector} field 'hidden_size' ({config.hidden_size}) must be divisible by "
            f"'num_heads' ({config.num_heads})"
        )
    if not 1 <= config.cross_attention_every <= config.num_layers:
        raise ValueError(
            f"{projector} field 'cross_attention_every' must be between 1 and num_layers "
            f"({config.num_layers}), got {config.cross_attention_every}"
        )
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"{projector} field 'dropout' must be in [0, 1), got {config.dropout}")


@dataclass(frozen=True)
class QFormerConfig(ProjectorConfig):
    """BLIP-2's defaults: 32 queries, a BERT-base sized Q-Former, cross-attention every 2nd layer.

    ``input_norm: false`` feeds the encoder tokens to the Q-Former as they come, for a tower that already ends
    in BLIP-2's ``ln_vision`` (transformers' ``Blip2VisionModel`` after its ``post_layernorm``).
    ``batched_queries: true`` stores the learned queries as ``[1, num_queries, hidden_size]``, the shape
    transformers' BLIP-2 checkpoints hold; the default ``[num_queries, hidden_size]`` keeps saved zoo models
    loading. Neither changes anything else. ``text_vocab_size > 0`` makes it InstructBLIP's Q-Former, which also
    reads the prompt's text (up to ``text_max_positions`` tokens of the projector's tokenizer).
    """

    num_queries: int = 32
    num_layers: int = 12
    num_heads: int = 12
    hidden_size: int = 768
    intermediate_size: int = 3072
    cross_attention_every: int = 2
    dropout: float = 0.1
    input_norm: bool = True
    batched_queries: bool = False
    text_vocab_size: int = 0
    text_max_positions: int = 512

    def __post_init__(self) -> None:
        if self.num_queries < 1:
            raise ValueError(f"qformer field 'num_queries' must be >= 1, got {self.num_queries}")
        if self.text_vocab_size < 0 or self.text_max_positions < 1:
            raise ValueError(
                f"qformer fields 'text_vocab_size' (>= 0, 0: no text input) and 'text_max_positions' (>= 1) got "
                f"{self.text_vocab_size} and {self.text_max_positions}"
            )
        _check_qformer_fields(self, "qformer")

    def num_tokens(self, n_in: int) -> int:
        return self.num_queries


@dataclass(frozen=True)
class WindowQFormerConfig(ProjectorConfig):
    """SALMONN's defaults: windows of 17 frames with stride 17 (~0.33 s of Whisper output), one query per
    window, a 2-layer BERT-base sized Q-Former with cross-attention in every layer.

    Windows start at ``0, stride, 2*stride, ...`` over the item's ``n`` real tokens; the last starts before
    ``n`` and may be partial (its missing tokens are masked). So
    ``num_windows(n) = ceil(max(n - window, 0) / stride) + 1`` and ``num_tokens(n) = num_windows(n) *
    queries_per_window``. SALMONN's ``F.unfold`` instead drops a trailing partial window. ``stride`` may
    not exceed ``window``: tokens between windows would be skipped and the last window could be empty.
    """

    window: int = 17
    stride: int = 17
    queries_per_window: int = 1
    num_layers: int = 2
    num_heads: int = 12
    hidden_size: int = 768
    intermediate_size: int = 3072
    cross_attention_every: int = 1
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window-qformer field 'window' must be >= 1, got {self.window}")
        if not 1 <= self.stride <= self.window:
            raise ValueError(
                f"window-qformer field 'stride' must be between 1 and window ({self.window}), got {self.stride}; "
                "a stride larger than the window would skip tokens"
            )
        if self.queries_per_window < 1:
            raise ValueError(
                f"window-qformer field 'queries_per_window' must be >= 1, got {self.queries_per_window}"
            )
        _check_qformer_fields(self, "window-qformer")

    def num_windows(self, n_in: int) -> int:
        """Windows covering ``n_in`` real tokens (the last one possibly partial)."""
        return -(-max(n_in - self.window, 0) // self.stride) + 1

    def num_tokens(self, n_in: int) -> int:
        return self.num_windows(n_in) * self.queries_per_window


class QFormerAttention(nn.Module):
    """BERT attention block: multi-head attention, output dense + dropout, residual, post-LayerNorm."""

    def __init__(self, hidden_size: int, context_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(context_size, hidden_size)
        self.value = nn.Linear(context_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=_BERT_LN_EPS)

    def forward(
        self, hidden: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None
    ) -> torch.Tensor:
        p = self.dropout.p if self.training else 0.0
        attended = masked_attention(
            self.query(hidden), self.key(context), self.value(context), context_mask, self.num_heads, p
        )
        return self.norm(self.dropout(self.dense(attended)) + hidden)


class QFormerLayer(nn.Module):
    """Query self-attention, optional cross-attention to the encoder tokens, query feed-forward."""

    def __init__(
        self,
        hidden_size: int,
        encoder_width: int,
        num_heads: int,
        intermediate_size: int,
        dropout: float,
        cross_attention: bool,
        reads_text: bool = False,
    ) -> None:
        super().__init__()
        self.self_attention = QFormerAttention(hidden_size, hidden_size, num_heads, dropout)
        if reads_text:  # the text positions' own feed-forward (transformers' intermediate/output)
            self.text_intermediate = nn.Sequential(nn.Linear(hidden_size, intermediate_size), nn.GELU())
            self.text_output = nn.Linear(intermediate_size, hidden_size)
            self.text_norm = nn.LayerNorm(hidden_size, eps=_BERT_LN_EPS)
        self.cross_attention = (
            QFormerAttention(hidden_size, encoder_width, num_heads, dropout) if cross_attention else None
        )
        self.intermediate = nn.Sequential(nn.Linear(hidden_size, intermediate_size), nn.GELU())
        self.output = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=_BERT_LN_EPS)

    def forward(
        self,
        queries: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        text: torch.Tensor | None = None,
        self_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Queries (and the text tokens beside them, ``self_mask`` over both) -> the layer's outputs for each."""
        if text is not None:
            both = self.self_attention(torch.cat([queries, text], 1), torch.cat([queries, text], 1), self_mask)
            queries, text = both[:, : queries.shape[1]], both[:, queries.shape[1] :]
            text = self.text_norm(self.dropout(self.text_output(self.text_intermediate(text))) + text)
        else:
            queries = self.self_attention(queries, queries, None)
        if self.cross_attention is not None:
            queries = self.cross_attention(queries, context, context_mask)
        return self.norm(self.dropout(self.output(self.intermediate(queries))) + queries), text


class QFormer(nn.Module):
    """Learned queries read ``context [B, N, encoder_width]`` (masked) -> ``[B, num_queries, hidden_size]``;
    ``batched_queries`` stores them with a leading axis of 1 (transformers' layout), same values."""

    def __init__(
        self,
        config: QFormerConfig | WindowQFormerConfig,
        encoder_width: int,
        num_queries: int,
        batched_queries: bool = False,
    ) -> None:
        super().__init__()
        shape = (1, num_queries, config.hidden_size) if batched_queries else (num_queries, config.hidden_size)
        self.query_tokens = nn.Parameter(torch.empty(shape))
        reads_text = getattr(config, "text_vocab_size", 0) > 0
        if reads_text:
            self.text_embeddings = nn.Embedding(config.text_vocab_size, config.hidden_size)
            self.text_positions = nn.Embedding(config.text_max_positions, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=_BERT_LN_EPS)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            QFormerLayer(
                config.hidden_size,
                encoder_width,
                config.num_heads,
                config.intermediate_size,
                config.dropout,
                cross_attention=i % config.cross_attention_every == 0,
                reads_text=reads_text,
            )
            for i in range(config.num_layers)
        )
        self.apply(_bert_init)
        nn.init.normal_(self.query_tokens, std=_BERT_INIT_STD)

    def forward(
        self,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        text_ids: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The query outputs; ``text_ids``/``text_mask`` (a text-reading Q-Former only) join self-attention."""
        queries = self.dropout(self.norm(self.query_tokens).expand(context.shape[0], -1, -1))
        text, self_mask = None, None
        if text_ids is not None and text_mask is not None:
            positions = torch.arange(text_ids.shape[1], device=text_ids.device)
            text = self.dropout(self.norm(self.text_embeddings(text_ids) + self.text_positions(positions)))
            self_mask = torch.cat([text_mask.new_ones(queries.shape[:2]), text_mask], 1).bool()
        for layer in self.layers:
            queries, text = layer(queries, context, context_mask, text, self_mask)
        return queries


def _bert_init(module: nn.Module) -> None:
    """BERT's initialisation, which BLIP-2 and SALMONN keep for a fresh Q-Former."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=_BERT_INIT_STD)
        nn.init.zeros_(module.bias)


class QFormerProjector(Projector):
    """BLIP-2 bridge: ``LayerNorm`` -> Q-Former over all real tokens -> ``Linear``; ``num_queries`` tokens out."""

    config_class = QFormerConfig

    def __init__(self, config: QFormerConfig, in_dim: int, out_dim: int) -> None:
        super().__init__(config, in_dim, out_dim)
        self.input_norm = nn.LayerNorm(in_dim) if config.input_norm else nn.Identity()
        self.qformer = QFormer(config, in_dim, config.num_queries, config.batched_queries)
        self.language_projection = nn.Linear(config.hidden_size, out_dim)

    @property
    def reads_text(self) -> bool:
        """Whether forward needs the prompt's text (``text_ids``/``text_mask``, one row per item)."""
        return self.config.text_vocab_size > 0

    def forward(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        text_ids: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        check_projector_input(tokens, mask, self.in_dim)
        require_nonempty(mask, "qformer")
        if self.reads_text != (text_ids is not None and text_mask is not None):
            raise ValueError(
                "this qformer reads the prompt's text: give text_ids and text_mask (model.processor does)"
                if self.reads_text else "this qformer reads no text (text_vocab_size 0); drop text_ids/text_mask"
            )
        if text_ids is not None and text_ids.shape[0] != tokens.shape[0]:
            raise ValueError(f"text_ids has {text_ids.shape[0]} rows for {tokens.shape[0]} items; give one per item")
        out = self.language_projection(self.qformer(self.input_norm(tokens), mask, text_ids, text_mask))
        return out, mask.new_ones(out.shape[:2])


class WindowQFormerProjector(Projector):
    """SALMONN bridge: the Q-Former runs on each window of real tokens separately (a window sees only its
    own tokens); the windows' query outputs are concatenated in time order, left-aligned per item."""

    config_class = WindowQFormerConfig

    def __init__(self, config: WindowQFormerConfig, in_dim: int, out_dim: int) -> None:
        super().__init__(config, in_dim, out_dim)
        self.input_norm = nn.LayerNorm(in_dim)
        self.qformer = QFormer(config, in_dim, config.queries_per_window)
        self.language_projection = nn.Linear(config.hidden_size, out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_projector_input(tokens, mask, self.in_dim)
        require_nonempty(mask, "window-qformer")
        cfg = self.config
        tokens, lengths = left_align(tokens, mask)
        overhang = (lengths - cfg.window).clamp(min=0)
        counts = (overhang + cfg.stride - 1) // cfg.stride + 1  # config.num_windows, per item
        item, index = _window_owners(counts)
        positions = (index * cfg.stride).unsqueeze(1) + torch.arange(cfg.window, device=tokens.device)
        real = positions < lengths[item].unsqueeze(1)
        windows = tokens[item.unsqueeze(1), positions.clamp(max=tokens.shape[1] - 1)]
        projected = self.language_projection(self.qformer(self.input_norm(windows), real))
        per_window = cfg.queries_per_window
        width = int(counts.max()) * per_window
        out = projected.new_zeros(tokens.shape[0], width, self.out_dim)
        slots = (index * per_window).unsqueeze(1) + torch.arange(per_window, device=tokens.device)
        out[item.unsqueeze(1), slots] = projected
        return out, prefix_mask(counts * per_window, width)


def _window_owners(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``counts[b]`` windows per item, each window's item and its index within that item (flat order)."""
    item = torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts)
    first = (counts.cumsum(0) - counts)[item]
    return item, torch.arange(item.shape[0], device=counts.device) - first
