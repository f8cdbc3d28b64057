"""Caption metrics: corpus BLEU-2/4, ROUGE-1/2/L F-measure, and exact-match METEOR.

Tokenisers. ROUGE and METEOR always use :func:`word_tokenize` (the ``"words"`` tokeniser): lowercase,
then every maximal run of ``[a-z0-9]`` is a token and everything else separates tokens. This is exactly
``rouge_score``'s tokenizer without stemming. BLEU uses it too by default; ``tokenizer="scibert"`` (or a
loaded tokenizer object) gives BLEU MolT5's tokenisation instead (:func:`scibert_tokenize`: SciBERT's
WordPiece, ``allenai/scibert_scivocab_uncased``, loaded only from local files), and its keys are then
``bleu2_scibert`` / ``bleu4_scibert`` so the two cannot be confused. Results of :func:`caption_bleu` and
:func:`caption_metrics` are :class:`CaptionScores`, whose ``tokenizers`` field names the tokeniser of each key.

Each prediction is compared with its own reference(s): give one string or a list of strings per sample.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tasks.metrics._validation import check_not_empty, check_same_length
from tasks.metrics.bleu import corpus_bleu

_WORD_RE = re.compile(r"[a-z0-9]+")

METEOR_ALPHA, METEOR_BETA, METEOR_GAMMA = 0.9, 3.0, 0.5

WORDS = "words"
SCIBERT = "scibert"
SCIBERT_MODEL = "allenai/scibert_scivocab_uncased"
SCIBERT_MAX_TOKENS = 512  # MolT5 truncates each caption to its first 512 word pieces
_SCIBERT_DROPPED = frozenset({"[PAD]", "[CLS]", "[SEP]"})  # the tokens MolT5 filters out of both sides
WORDS_DESCRIPTION = "words: lowercased [a-z0-9]+ runs"


class TokenizerNotFoundError(FileNotFoundError):
    """The SciBERT tokenizer is not on this machine (nothing is ever downloaded)."""


class CaptionScores(dict[str, float]):
    """Metric key -> value, plus ``tokenizers``: metric key -> the tokeniser that produced its tokens."""

    def __init__(self, values: dict[str, float], tokenizers: dict[str, str]) -> None:
        super().__init__(values)
        self.tokenizers = tokenizers


def word_tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and return its ``[a-z0-9]+`` runs (punctuation and other characters split)."""
    return _WORD_RE.findall(text.lower())


def _reference_lists(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]]
) -> list[list[str]]:
    check_same_length("predictions", predictions, "references", references)
    check_not_empty("predictions", predictions)
    out = []
    for i, refs in enumerate(references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError(f"sample {i} has no reference caption")
        out.append(refs)
    return out


@functools.lru_cache(maxsize=4)
def load_scibert_tokenizer(name_or_path: str | Path = SCIBERT_MODEL) -> Any:
    """SciBERT's WordPiece tokenizer (``AutoTokenizer``) from local files only: the Hugging Face cache for a
    model id, or a folder holding the model's ``config.json`` and ``vocab.txt`` (what
    ``huggingface-cli download allenai/scibert_scivocab_uncased --local-dir DIR`` writes) or a saved tokenizer.
    Raises :class:`TokenizerNotFoundError` saying how to fetch it when it is not there; never uses the network.
    """
    how = (
        f"fetch it once with `huggingface-cli download {SCIBERT_MODEL}` (it then loads from the Hugging Face "
        "cache), or add `--local-dir DIR` and give DIR"
    )
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise TokenizerNotFoundError(
            f"the SciBERT tokenizer needs the transformers package; install it, then {how}"
        ) from None
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=True)
    except Exception as err:  # transformers and huggingface_hub raise OSError, ValueError and their own types
        raise TokenizerNotFoundError(
            f"the SciBERT tokenizer {str(name_or_path)!r} is not available locally ({type(err).__name__}); {how}"
        ) from err


def scibert_tokenize(text: str, tokenizer: Any) -> list[str]:
    """MolT5's caption tokenisation: the WordPiece tokens of ``text`` (no special tokens added), cut to the
    first :data:`SCIBERT_MAX_TOKENS`, then every ``[PAD]``, ``[CLS]`` and ``[SEP]`` token dropped (a literal
    ``[CLS]`` in the text included, as MolT5 filters them by string)."""
    tokens = tokenizer.tokenize(text)[:SCIBERT_MAX_TOKENS]
    return [t for t in tokens if t not in _SCIBERT_DROPPED]


def _bleu_tokenizer(tokenizer: Any) -> tuple[Callable[[str], list[str]], str, str]:
    """(tokenise function, key suffix, description) for the ``tokenizer`` argument of :func:`caption_bleu`."""
    if tokenizer == WORDS:
        return word_tokenize, "", WORDS_DESCRIPTION
    if tokenizer == SCIBERT:
        tokenizer = load_scibert_tokenizer()
    if isinstance(tokenizer, str) or not callable(getattr(tokenizer, "tokenize", None)):
        raise ValueError(
            f"unknown caption tokenizer {tokenizer!r}; use {WORDS!r} (the default), {SCIBERT!r} "
            "(MolT5's, from local files) or a loaded WordPiece tokenizer (load_scibert_tokenizer(path))"
        )
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    return (lambda text: scibert_tokenize(text, tokenizer)), "_scibert", f"scibert: WordPiece ({name})"


def caption_bleu(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], *, tokenizer: Any = WORDS
) -> CaptionScores:
    """Corpus BLEU-2 and BLEU-4 (nltk ``corpus_bleu`` semantics, no smoothing) on the tokens of ``tokenizer``.

    ``"words"`` (default): :func:`word_tokenize`, keys ``bleu2``/``bleu4``. ``"scibert"``: MolT5's SciBERT
    WordPiece tokens (:func:`scibert_tokenize`, tokenizer from :func:`load_scibert_tokenizer`), keys
    ``bleu2_scibert``/``bleu4_scibert``, comparable with MolT5's BLEU-2/4. A loaded tokenizer object is used
    the SciBERT way. The result's ``tokenizers`` names the tokeniser of each key.
    """
    tokenize, suffix, description = _bleu_tokenizer(tokenizer)
    refs = _reference_lists(predictions, references)
    hyp_tokens = [tokenize(p) for p in predictions]
    ref_tokens = [[tokenize(r) for r in rs] for rs in refs]
    values = {
        f"bleu2{suffix}": corpus_bleu(ref_tokens, hyp_tokens, max_order=2),
        f"bleu4{suffix}": corpus_bleu(ref_tokens, hyp_tokens, max_order=4),
    }
    return CaptionScores(values, dict.fromkeys(values, description))


def _f_measure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _rouge_n(prediction: list[str], reference: list[str], n: int) -> float:
    pred = Counter(tuple(prediction[i : i + n]) for i in range(len(prediction) - n + 1))
    ref = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
    overlap = sum((pred & ref).values())
    return _f_measure(overlap / max(sum(pred.values()), 1), overlap / max(sum(ref.values()), 1))


def _longest_common_subsequence(first: list[str], second: list[str]) -> int:
    previous = [0] * (len(second) + 1)
    for a in first:
        current = [0]
        for j, b in enumerate(second, 1):
            current.append(previous[j - 1] + 1 if a == b else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _rouge_l(prediction: list[str], reference: list[str]) -> float:
    if not prediction or not reference:
        return 0.0
    lcs = _longest_common_subsequence(prediction, reference)
    return _f_measure(lcs / len(prediction), lcs / len(reference))


def rouge_f_no_stemming(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]]
) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measure, as ``rouge_score`` with ``use_stemmer=False``, on
    :func:`word_tokenize` tokens.

    Per sample and per ROUGE type, the best-scoring reference counts (``rouge_score``'s
    ``score_multi``); scores are then averaged over samples. ROUGE-L is sentence-level LCS, not the
    summary-level ROUGE-Lsum.
    """
    refs = _reference_lists(predictions, references)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, sample_refs in zip(predictions, refs, strict=True):
        pred = word_tokenize(prediction)
        ref_tokens = [word_tokenize(r) for r in sample_refs]
        totals["rouge1"] += max(_rouge_n(pred, r, 1) for r in ref_tokens)
        totals["rouge2"] += max(_rouge_n(pred, r, 2) for r in ref_tokens)
        totals["rougeL"] += max(_rouge_l(pred, r) for r in ref_tokens)
    return {key: value / len(predictions) for key, value in totals.items()}


def _exact_alignment(hypothesis: list[str], reference: list[str]) -> list[tuple[int, int]]:
    """nltk's exact-match stage: hypothesis words from last to first, each takes the last unused equal
    reference word; pairs are returned sorted by hypothesis position."""
    free = list(range(len(reference)))
    pairs = []
    for i in reversed(range(len(hypothesis))):
        for slot in reversed(range(len(free))):
            if reference[free[slot]] == hypothesis[i]:
                pairs.append((i, free.pop(slot)))
                break
    return sorted(pairs)


def _meteor_exact_single(hypothesis: list[str], reference: list[str]) -> float:
    matches = _exact_alignment(hypothesis, reference)
    if not matches:
        return 0.0
    precision = len(matches) / len(hypothesis)
    recall = len(matches) / len(reference)
    f_mean = precision * recall / (METEOR_ALPHA * precision + (1 - METEOR_ALPHA) * recall)
    chunks = 1 + sum(
        1
        for (h0, r0), (h1, r1) in zip(matches, matches[1:], strict=False)
        if not (h1 == h0 + 1 and r1 == r0 + 1)
    )
    penalty = METEOR_GAMMA * (chunks / len(matches)) ** METEOR_BETA
    return (1 - penalty) * f_mean


def meteor_exact(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Mean sentence METEOR using exact word matches only (alpha=0.9, beta=3, gamma=0.5, nltk's defaults).

    Tokeniser: always :func:`word_tokenize` (``"words"``). This is nltk's ``meteor_score`` with its stem and
    WordNet-synonym stages removed (WordNet cannot be installed here). It is not official METEOR, which also
    matches stems, synonyms and paraphrases and searches for the alignment with the fewest chunks; nor is it
    MolT5's METEOR, which gives nltk the raw strings (lowercased and split on whitespace, not SciBERT word
    pieces) with those stages on. Do not compare it with published METEOR numbers. Per sample the best
    reference counts.
    """
    refs = _reference_lists(predictions, references)
    total = 0.0
    for prediction, sample_refs in zip(predictions, refs, strict=True):
        hyp = word_tokenize(prediction)
        total += max(_meteor_exact_single(hyp, word_tokenize(r)) for r in sample_refs)
    return total / len(predictions)


def caption_metrics(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], *, bleu_tokenizer: Any = WORDS
) -> CaptionScores:
    """BLEU-2/4 (on ``bleu_tokenizer``'s tokens, see :func:`caption_bleu`), ROUGE-1/2/L F (no stemming) and
    exact-match METEOR (both on :func:`word_tokenize` tokens) for generated captions. The result's
    ``tokenizers`` names the tokeniser of each key."""
    bleu = caption_bleu(predictions, references, tokenizer=bleu_tokenizer)
    rouge = rouge_f_no_stemming(predictions, references)
    values = {
        **bleu,
        **{f"{key}_f_no_stemming": value for key, value in rouge.items()},
        "meteor_exact": meteor_exact(predictions, references),
    }
    return CaptionScores(values, {key: bleu.tokenizers.get(key, WORDS_DESCRIPTION) for key in values})
