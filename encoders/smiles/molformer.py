"""A native MoLFormer-style SMILES encoder: rotary positions and linear attention, trainable from scratch.

MoLFormer (Ross et al., 2022) is a post-LayerNorm BERT encoder whose softmax attention is replaced by linear
attention, ``phi(q) (phi(k)^T v) / (phi(q) . sum_j phi(k_j))``, which costs O(N) in sequence length, with
rotary position embeddings applied to queries and keys before ``phi``; there are no position embeddings.
Two feature maps ``phi``:

- ``"elu"``: ``elu(x) + 1``, the default of fast-transformers' linear attention; deterministic, no buffers.
- ``"random_relu"``: ``relu(x @ W)`` with ``W`` ``[head_dim, num_random_features]`` orthogonal random
  features, as in IBM's released MoLFormer-XL checkpoints. ``W`` is a fixed buffer (we never redraw it),
  so a loaded checkpoint behaves deterministically.

:func:`molformer_key_map` renames the keys of IBM's Hugging Face port (``ibm-research/MoLFormer-XL-both-10pct``,
``modeling_molformer.py``) onto this module; :func:`load_molformer_weights` loads them strictly. The processor
reads one of two vocabularies (``vocab_format``): ``bert``, our ``vocab.txt`` with ``[CLS]/[SEP]/[PAD]``; or
``molformer``, IBM's own (``vocab.json`` or ``tokenizer.json``) with IBM's regex and ``<bos>``/``<eos>``/``<pad>``
at IBM's ids. The file may come from a checkpoint (``pretrained``: a Hub repo at ``revision``, or a folder), and
``vocab_sha256`` pins its bytes, so a saved model records exactly which vocabulary it was built with.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedTokenizerBase

from encoders.base import EncoderOutput
from encoders.pooling import Pooling, check_pooling, pool_tokens
from encoders.smiles.processor import SmilesProcessor
from encoders.smiles.tokenizer import SmilesTokenizer, molformer_tokenizer, read_molformer_vocab


@dataclass(frozen=True)
class MolFormerConfig:
    """Sizes default to MoLFormer-XL (12 layers, 12 heads, 768-d, 768-d feed-forward, 202 tokens).

    vocab_size must equal the size of the vocabulary, and pad_token_id its pad id (``[PAD]``, or IBM's
    ``<pad>``). ``vocab_file`` is a path, or with ``pretrained`` a file name in that Hub repo (fetched at
    ``revision``, which a Hub repo needs, as it needs ``vocab_sha256``) or folder; ``vocab_format`` says
    what it is (see the module docstring). ``pretrained`` gives only the vocabulary: the weights come from
    a card's weight entry (key map ``molformer``).
    """

    vocab_size: int
    vocab_file: str | None = None
    pad_token_id: int = 0
    vocab_format: Literal["bert", "molformer"] = "bert"
    pretrained: str | None = None
    revision: str | None = None
    vocab_sha256: str | None = None
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 768
    max_length: int = 202
    feature_map: Literal["elu", "random_relu"] = "elu"
    num_random_features: int = 32
    rope_base: float = 10000.0
    dropout: float = 0.1
    embedding_dropout: float = 0.2
    layer_norm_eps: float = 1e-12
    attention_eps: float = 1e-6
    pooling: Pooling = "mean"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"hidden_size {self.hidden_size} must split into {self.num_heads} heads of even size (rotary pairs)"
            )
        if self.feature_map not in ("elu", "random_relu"):
            raise ValueError(f"feature_map must be 'elu' or 'random_relu', got {self.feature_map!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id {self.pad_token_id} is outside the vocabulary (size {self.vocab_size})"
            )
        if self.vocab_format not in _VOCAB_READERS:
            raise ValueError(f"vocab_format must be one of {sorted(_VOCAB_READERS)}, got {self.vocab_format!r}")
        if self.pretrained is not None and not Path(self.pretrained).is_dir() and not (
            self.revision and self.vocab_sha256 and self.vocab_file
        ):
            raise ValueError(
                f"pretrained={self.pretrained!r} is read from the Hub, so give vocab_file, its vocab_sha256 and the "
                "revision (a 40-hex commit) too; or pass a local folder"
            )
        if self.max_length < 2:
            raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {self.max_length}")
        check_pooling(self.pooling)

    def num_tokens(self, size: int) -> int:
        """Encoder tokens for an item of ``size`` tokens (special tokens included): capped at ``max_length``."""
        return min(size, self.max_length)


# vocab_format -> (vocabulary file, max_length) -> transformers tokenizer
_VOCAB_READERS = {
    "bert": lambda path, length: SmilesTokenizer.from_file(path).to_transformers(length),
    "molformer": lambda path, length: molformer_tokenizer(read_molformer_vocab(path), length),
}


def vocab_path(config: MolFormerConfig) -> Path:
    """The local vocabulary file of ``config`` (downloaded into the Hugging Face cache when ``pretrained`` is a
    Hub repo), its bytes checked against ``vocab_sha256`` when the config gives one."""
    if config.vocab_file is None:
        raise ValueError("MolFormerProcessor needs config.vocab_file (write one with SmilesTokenizer.save)")
    if config.pretrained is None:
        path = Path(config.vocab_file)
    elif Path(config.pretrained).is_dir():
        path = Path(config.pretrained) / config.vocab_file
    else:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(config.pretrained, config.vocab_file, revision=config.revision))
    if config.vocab_sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != config.vocab_sha256.lower():
            raise ValueError(
                f"{path} has sha256 {digest}, not the vocab_sha256 {config.vocab_sha256} the config pins; "
                "fetch the file again at the pinned revision"
            )
    return path


class MolFormerProcessor(SmilesProcessor):
    """SMILES strings to ``input_ids``/``attention_mask``: the regex tokenizer over the config's vocabulary
    (:func:`vocab_path`, ``vocab_format``), or a saved ``transformers`` tokenizer (the one this processor built,
    reloaded)."""

    def __init__(self, config: MolFormerConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        if tokenizer is None:
            tokenizer = _VOCAB_READERS[config.vocab_format](vocab_path(config), config.max_length)
        if len(tokenizer) != config.vocab_size or tokenizer.pad_token_id != config.pad_token_id:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens with its pad at {tokenizer.pad_token_id}, but the config "
                f"says vocab_size={config.vocab_size}, pad_token_id={config.pad_token_id}; make them agree"
            )
        super().__init__(tokenizer, config)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding in the half-split layout (dimension i pairs with i + head_dim/2)."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` ``[B, H, N, head_dim]`` by angles proportional to each token's position."""
        angles = torch.outer(torch.arange(x.shape[-2], device=x.device, dtype=torch.float32), self.inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        first, second = x.chunk(2, dim=-1)
        rotated_half = torch.cat((-second, first), dim=-1)
        return x * angles.cos().to(x.dtype) + rotated_half * angles.sin().to(x.dtype)


def orthogonal_random_features(dim: int, num_features: int) -> torch.Tensor:
    """``[dim, num_features]``: blocks of orthogonal directions with Gaussian-distributed lengths (Performer)."""
    blocks = []
    for _ in range(math.ceil(num_features / dim)):
        gaussian = torch.randn(dim, dim)
        directions, _ = torch.linalg.qr(gaussian)
        blocks.append(directions * gaussian.norm(dim=1))
    return torch.cat(blocks, dim=1)[:, :num_features].clone()  # its own storage, so safetensors can save it


class RandomReluFeatureMap(nn.Module):
    """``relu(x @ projection)`` with a fixed orthogonal random ``projection`` (MoLFormer-XL's feature map)."""

    def __init__(self, head_dim: int, num_features: int) -> None:
        super().__init__()
        self.register_buffer("projection", orthogonal_random_features(head_dim, num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x @ self.projection)


class EluFeatureMap(nn.Module):
    """``elu(x) + 1``: positive features, so the attention normaliser never changes sign."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x) + 1


class LinearAttention(nn.Module):
    """Multi-head linear attention with rotary queries/keys; padded keys contribute nothing."""

    def __init__(self, config: MolFormerConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.eps = config.attention_eps
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        head_dim = config.hidden_size // config.num_heads
        self.feature_map = (
            EluFeatureMap()
            if config.feature_map == "elu"
            else RandomReluFeatureMap(head_dim, config.num_random_features)
        )
        self.rotary = RotaryEmbedding(head_dim, config.rope_base)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, N, D]``, ``mask`` ``[B, N]`` bool -> ``[B, N, D]``."""
        q = self.feature_map(self.rotary(self._heads(self.query(x))))
        k = self.feature_map(self.rotary(self._heads(self.key(x))))
        k = k * mask[:, None, :, None].to(k.dtype)
        v = self._heads(self.value(x))
        context = q @ (k.transpose(-1, -2) @ v)
        normaliser = (q @ k.sum(dim=-2, keepdim=True).transpose(-1, -2)).clamp(min=self.eps)
        out = (context / normaliser).transpose(1, 2).flatten(2)
        return self.out(out)


class MolFormerLayer(nn.Module):
    """Post-LayerNorm transformer layer: linear attention, then a GELU feed-forward, each with a residual."""

    def __init__(self, config: MolFormerConfig) -> None:
        super().__init__()
        self.attn = LinearAttention(config)
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.dropout(self.attn(x, mask)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


class MolFormerEncoder(nn.Module):
    """Token embeddings, ``num_layers`` MoLFormer layers and a final LayerNorm over SMILES tokens."""

    modality = "smiles"
    config_class = MolFormerConfig
    processor_class = MolFormerProcessor

    def __init__(self, config: MolFormerConfig, load_pretrained: bool = True) -> None:
        """Random init; ``load_pretrained`` is accepted for the zoo's encoder contract, there is nothing to load
        (IBM's weights go through :func:`load_molformer_weights`)."""
        super().__init__()
        self.config = config
        self.hidden_size: int = config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.embed_dropout = nn.Dropout(config.embedding_dropout)
        self.layers = nn.ModuleList(MolFormerLayer(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.apply(_init_weights)

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        """``input_ids``/``attention_mask`` ``[B, N]`` from the processor to per-token and pooled features."""
        mask = attention_mask.bool()
        x = self.embed_dropout(self.embed(input_ids))
        for layer in self.layers:
            x = layer(x, mask)
        tokens = self.final_norm(x)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pool_tokens(tokens, mask, self.config.pooling))


def _init_weights(module: nn.Module) -> None:
    """BERT initialisation (normal, std 0.02; zero biases; zero padding embedding), as MoLFormer uses."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()


# IBM's HF MoLFormer key (after an optional "molformer." prefix) -> ours.
_LAYER = r"encoder\.layer\.(\d+)\."
_KEY_MAP: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), target)
    for pattern, target in (
        (r"embeddings\.word_embeddings\.weight", "embed.weight"),
        (_LAYER + r"attention\.self\.(query|key|value)\.(weight|bias)", r"layers.\1.attn.\2.\3"),
        (_LAYER + r"attention\.self\.feature_map\.weight", r"layers.\1.attn.feature_map.projection"),
        (_LAYER + r"attention\.output\.dense\.(weight|bias)", r"layers.\1.attn.out.\2"),
        (_LAYER + r"attention\.output\.LayerNorm\.(weight|bias)", r"layers.\1.attn_norm.\2"),
        (_LAYER + r"intermediate\.dense\.(weight|bias)", r"layers.\1.ffn_in.\2"),
        (_LAYER + r"output\.dense\.(weight|bias)", r"layers.\1.ffn_out.\2"),
        (_LAYER + r"output\.LayerNorm\.(weight|bias)", r"layers.\1.ffn_norm.\2"),
        (r"LayerNorm\.(weight|bias)", r"final_norm.\1"),
    )
)
# Task heads are not part of an encoder; rotary tables are recomputed from the config.
_DROPPED = re.compile(r"(lm_head|classifier)\..+|.*rotary_embeddings\.(inv_freq|cos_cached|sin_cached)")


def molformer_key_map(state_dict: Mapping[str, torch.Tensor]) -> dict[str, str | None]:
    """``{IBM key: our key, or None when dropped on purpose}`` for an IBM HF MoLFormer state dict
    (``MolformerModel`` or ``MolformerForMaskedLM``) — the rename-map contract of ``zoo``'s key maps.

    ``molformer.`` prefixes are stripped; ``lm_head.*``/``classifier.*`` heads and rotary tables are dropped;
    any other key that has no counterpart here raises, listing them all.
    """
    renames: dict[str, str | None] = {}
    unknown = []
    for key in state_dict:
        bare = key.removeprefix("molformer.")
        if _DROPPED.fullmatch(bare):
            renames[key] = None
            continue
        target = next(
            (pattern.sub(repl, bare) for pattern, repl in _KEY_MAP if pattern.fullmatch(bare)), None
        )
        if target is None:
            unknown.append(key)
        else:
            renames[key] = target
    if unknown:
        raise ValueError(
            f"keys with no MoLFormerEncoder counterpart (not an IBM MoLFormer checkpoint?): {unknown}"
        )
    return renames


def load_molformer_weights(encoder: MolFormerEncoder, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load an IBM HF MoLFormer state dict into ``encoder``; every encoder key must be filled, and only those."""
    renamed = {new: state_dict[old] for old, new in molformer_key_map(state_dict).items() if new is not None}
    missing, unexpected = encoder.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        hint = ""
        if any("feature_map" in key for key in (*missing, *unexpected)):
            hint = " (IBM's checkpoints need feature_map='random_relu' and their num_random_features)"
        raise ValueError(
            f"MoLFormer weights do not fit this encoder{hint}: missing {missing}, unexpected {unexpected}"
        )
