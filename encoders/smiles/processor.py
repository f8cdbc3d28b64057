"""SMILES strings to the padded ``input_ids``/``attention_mask`` batch that every SMILES encoder takes.

Each item is first checked with the SMILES regex (so bad input fails with the item named, rather than
silently turning into ``[UNK]``), then encoded by the encoder's own ``transformers`` tokenizer, truncated to
``max_length`` and right-padded. ``sizes`` are the untruncated token counts including special tokens; the
config's ``num_tokens`` caps them, and the batch's attention mask has exactly that many ones per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from transformers import PreTrainedTokenizerBase

from encoders.base import InvalidInputError, ProcessedBatch
from encoders.smiles.tokenizer import tokenize_smiles


class TokenBudget(Protocol):
    """What a processor needs from an encoder config: the length cap and the token-count rule."""

    max_length: int

    def num_tokens(self, size: int) -> int: ...


class SmilesProcessor:
    """Validates, tokenizes, truncates and pads a list of SMILES for one encoder config."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: TokenBudget) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has no pad token; set tokenizer.pad_token first"
            )
        self.tokenizer = tokenizer
        self.config = config

    def __call__(self, smiles: Sequence[str]) -> ProcessedBatch:
        """Encode ``smiles`` into ``input_ids``/``attention_mask`` ``[B, L]`` (L <= max_length) and sizes."""
        if isinstance(smiles, str) or not smiles:
            raise InvalidInputError(f"expected a non-empty list of SMILES strings, got {_short(smiles)}")
        for i, item in enumerate(smiles):
            if not isinstance(item, str) or not item:
                raise InvalidInputError(f"SMILES item {i} is {_short(item)}; pass a non-empty SMILES string")
            try:
                tokenize_smiles(item)
            except InvalidInputError as error:
                raise InvalidInputError(f"SMILES item {i}: {error}") from None
        specials = self.tokenizer.num_special_tokens_to_add()
        sizes = [len(self.tokenizer.tokenize(item)) + specials for item in smiles]
        encoded = self.tokenizer(
            list(smiles),
            padding="longest",
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        return ProcessedBatch(inputs=inputs, sizes=sizes)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
