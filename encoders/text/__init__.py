"""Text towers and tokenizers (Hugging Face transformers), including the tokenizers bundled with modalzoo."""

from encoders.text.tokenizers import BUNDLED_TOKENIZERS, load_tokenizer

__all__ = ["BUNDLED_TOKENIZERS", "load_tokenizer"]
