"""Resolve tokenizers: ``bundled:<name>`` (shipped in ``encoders/text/assets``), a local directory, or a hub id.

Bundled: ``tiny-bpe`` (600 tokens, trained here for tests and the scene models), ``smiles-bpe`` (1,000 tokens
over USPTO-50K training SMILES, for the reaction models) and ``bert-base-uncased`` (Google's
WordPiece ``vocab.txt``, sha256 ``07eced37...``, the vocabulary of BERT-uncased and its distillations such as
all-MiniLM-L6-v2), so text towers built on that vocabulary load without the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ASSETS = Path(__file__).parent / "assets"
BUNDLED_TOKENIZERS: tuple[str, ...] = ("tiny-bpe", "smiles-bpe", "bert-base-uncased")
BUNDLED_PREFIX = "bundled:"


def tokenizer_path(source: str) -> str:
    """Map ``bundled:<name>`` to its directory; other sources (dirs, hub ids) pass through."""
    if not source.startswith(BUNDLED_PREFIX):
        return source
    name = source[len(BUNDLED_PREFIX) :]
    if name not in BUNDLED_TOKENIZERS:
        raise ValueError(f"no bundled tokenizer {name!r}; bundled: {', '.join(BUNDLED_TOKENIZERS)}")
    return str(ASSETS / name)


def load_tokenizer(source: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """A ``transformers`` fast tokenizer from a bundled name, a directory or a hub id (never runs remote code
    unless ``trust_remote_code`` is passed explicitly)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        tokenizer_path(source), revision=revision, trust_remote_code=trust_remote_code
    )
