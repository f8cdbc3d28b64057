"""Metric adapters for generation tasks: predictions (``None`` for a failed row) + references -> scores.

Each adapter returns the summary metrics and one score per row. A failed row (``None``) always scores as
wrong and stays in every denominator; the numbers themselves come from the pure functions in ``tasks.metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Scores:
    """Summary metrics, one score per row (1.0 = fully right), rows whose output could not be parsed, and
    which summary keys are means over rows (those extend to unscorable rows as zeros; corpus-level ones
    such as BLEU cannot and are reported over the scored rows)."""

    summary: dict[str, float]
    per_row: list[float]
    unparsable: dict[int, str]
    rate_keys: tuple[str, ...] = ()
    answers: list[Any] | None = None  # the predictions as scored, when the metric normalised them
    count_keys: tuple[str, ...] = ()  # counts of failed predictions: a row that failed before scoring adds one


def _first(prediction: Any) -> str:
    if prediction is None:
        return ""
    return prediction[0] if isinstance(prediction, list) else prediction


def vqa(predictions: Sequence[Any], references: Sequence[Any], **_: Any) -> Scores:
    """Official VQAv2 accuracy (references: the ten human answers of each question)."""
    from tasks.metrics import vqa_accuracy

    per_row = [0.0 if p is None else vqa_accuracy(_first(p), list(r)) for p, r in zip(predictions, references, strict=True)]
    return Scores({"vqa_accuracy": sum(per_row) / len(per_row)}, per_row, {}, ("vqa_accuracy",))


def exact_match(predictions: Sequence[Any], references: Sequence[Any], **_: Any) -> Scores:
    """Whitespace-stripped, case-sensitive string equality with any of the references."""
    per_row = []
    for p, r in zip(predictions, references, strict=True):
        refs = [r] if isinstance(r, str) else list(r)
        per_row.append(float(p is not None and _first(p).strip() in [x.strip() for x in refs]))
    return Scores({"exact_match": sum(per_row) / len(per_row)}, per_row, {}, ("exact_match",))


def captioning(
    predictions: Sequence[Any],
    references: Sequence[Any],
    bleu_tokenizer: str = "words",
    scibert_path: str | None = None,
    **_: Any,
) -> Scores:
    """Corpus BLEU-2/4, ROUGE-1/2/L F and exact-match METEOR; a failed row is an empty caption.

    BLEU tokens: ``bleu_tokenizer: words`` (default, keys ``bleu2``/``bleu4``) or ``scibert`` (MolT5's SciBERT
    WordPiece, keys ``bleu2_scibert``/``bleu4_scibert``), loaded from local files only: the Hugging Face cache,
    or the folder ``scibert_path``. ROUGE and METEOR always use word tokens."""
    from tasks.metrics import caption_metrics, load_scibert_tokenizer, rouge_f_no_stemming

    tokenizer: Any = bleu_tokenizer
    if scibert_path is not None:
        if bleu_tokenizer != "scibert":
            raise ValueError(f"scibert_path is only read with bleu_tokenizer: scibert, not {bleu_tokenizer!r}")
        tokenizer = load_scibert_tokenizer(scibert_path)
    texts = [_first(p) for p in predictions]
    summary = caption_metrics(texts, list(references), bleu_tokenizer=tokenizer)
    per_row = [rouge_f_no_stemming([t], [r])["rougeL"] for t, r in zip(texts, references, strict=True)]
    return Scores(summary, per_row, {})


def reaction_topk(predictions: Sequence[Any], references: Sequence[Any], ks: Sequence[int] = (1, 3, 5, 10), **_: Any) -> Scores:
    """Top-k exact match (stereo-aware and stereo-agnostic, canonical SMILES, any component order) and
    top-1 validity; a failed row has no candidates. Each ranked list is first reduced to distinct molecule
    sets (two spellings of one molecule are one answer), and that list is what the results show."""
    from tasks.metrics import (
        distinct_molecules,
        top1_validity,
        topk_exact_match_stereo_agnostic,
        topk_exact_match_stereo_aware,
    )
    from tasks.metrics.smiles import canonicalize_smiles

    ranked = [[] if p is None else distinct_molecules([p] if isinstance(p, str) else list(p)) for p in predictions]
    ks = [k for k in ks if k <= max(1, max(len(r) for r in ranked))] or [1]
    aware = topk_exact_match_stereo_aware(ranked, list(references), ks)
    agnostic = topk_exact_match_stereo_agnostic(ranked, list(references), ks)
    summary = {f"top{k}_exact_match_stereo_aware": v for k, v in aware.accuracy.items()}
    summary |= {f"top{k}_exact_match_stereo_agnostic": v for k, v in agnostic.accuracy.items()}
    summary["top1_validity"] = top1_validity(ranked)
    per_row = [
        float(bool(r) and canonicalize_smiles(r[0]) is not None and canonicalize_smiles(r[0]) == canonicalize_smiles(ref))
        for r, ref in zip(ranked, references, strict=True)
    ]
    answers = [None if p is None else (r[0] if isinstance(p, str) else r) for p, r in zip(predictions, ranked, strict=True)]
    return Scores(summary, per_row, {}, tuple(summary), answers)


def grounding(predictions: Sequence[Any], references: Sequence[Any], bins: int = 512, threshold: float = 0.5, **_: Any) -> Scores:
    """Decode position tokens to a normalised xyxy box and score Acc@IoU>=threshold against the reference."""
    import torch

    from tasks.metrics import decode_box_tokens, paired_iou

    per_row, unparsable = [], {}
    for i, (p, ref) in enumerate(zip(predictions, references, strict=True)):
        if p is None:
            per_row.append(0.0)
            continue
        try:
            box = decode_box_tokens(_first(p), bins=bins)
        except ValueError as err:
            unparsable[i] = f"unparsable box: {err}"
            per_row.append(0.0)
            continue
        iou = float(paired_iou(torch.tensor([box]), torch.tensor([list(ref)]))[0])
        per_row.append(float(iou >= threshold))
    key = f"accuracy_at_iou_{threshold}"
    return Scores({key: sum(per_row) / len(per_row)}, per_row, unparsable, (key,))


def molecule_generation(predictions: Sequence[Any], references: Sequence[Any], profile: str = "strict", **_: Any) -> Scores:
    """Text -> molecule metrics in the MolT5 style (BLEU over SMILES characters, exact match, Levenshtein,
    validity, fingerprint Tanimoto). ``metric_options: {profile: molt5}`` reproduces MolT5's own evaluation
    (InChI exact match, Morgan count fingerprints, an empty prediction valid) under keys prefixed ``molt5_``;
    the default ``strict`` profile keeps the unprefixed keys. A row's score is its exact match in that profile;
    a failed row is an invalid prediction (and the empty string for BLEU and Levenshtein)."""
    from tasks.metrics import molecule_exact_matches, molecule_generation_metrics

    texts = [None if p is None else _first(p) for p in predictions]
    summary = molecule_generation_metrics(texts, list(references), profile=profile)
    per_row = molecule_exact_matches(texts, list(references), profile=profile)
    # means over every row, so a row that failed before scoring extends them as an invalid prediction (0)
    prefix = "molt5_" if profile == "molt5" else ""
    rates = (f"{prefix or 'canonical_'}exact_match", f"{prefix}validity", *(k for k in summary if k.endswith("_tanimoto")))
    return Scores(summary, per_row, {}, tuple(k for k in rates if k in summary),
                  count_keys=tuple(k for k in (f"{prefix}num_invalid",) if k in summary))


def regression(predictions: Sequence[Any], references: Sequence[Any], **_: Any) -> Scores:
    """R², MAE and RMSE over the rows with a finite prediction and a numeric reference; the others are listed
    as unscorable and ``scored_fraction`` says how many were scored. A row's score is its closeness,
    ``1 - |error| / (range of the references)`` floored at 0: 1 is exact, 0 is off by the whole range."""
    from tasks.data.text import finite_number
    from tasks.metrics import mae, r_squared, rmse

    pairs, unparsable = {}, {}
    for i, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        value, predicted = finite_number(reference), finite_number(prediction)
        if value is None or predicted is None:
            unparsable[i] = f"no finite prediction and reference (prediction {prediction!r:.40}, reference {reference!r:.40})"
            continue
        pairs[i] = (predicted, value)
    if not pairs:
        return Scores({"scored_fraction": 0.0}, [0.0] * len(predictions), unparsable)
    p, t = [pair[0] for pair in pairs.values()], [pair[1] for pair in pairs.values()]
    spread = (max(t) - min(t)) or 1.0
    per_row = [max(0.0, 1.0 - abs(pairs[i][0] - pairs[i][1]) / spread) if i in pairs else 0.0 for i in range(len(predictions))]
    summary = {"r2": r_squared(p, t), "mae": mae(p, t), "rmse": rmse(p, t)}
    if unparsable:
        summary["scored_fraction"] = len(pairs) / len(predictions)
    return Scores(summary, per_row, unparsable)


def property_scores(predictions: Sequence[Any], references: Sequence[Any], target_type: str = "binary", **_: Any) -> Scores:
    """A property task's metrics (:func:`tasks.metrics.property_metrics`) over every row: a row with no
    prediction counts with an uninformative one (probability 0.5, uniform class probabilities, or the split's
    mean for regression), so it stays in every denominator. A row's score is the share of its labels predicted
    right at threshold 0.5 (binary), its class being the top one (multiclass), or its closeness
    ``1 - |error| / (range of the labels)`` floored at 0, averaged over its labels (regression)."""
    import numpy as np

    from tasks.metrics import property_metrics

    labels = np.array([list(r) for r in references], dtype=np.float64)
    width = next((len(p) for p in predictions if p is not None), labels.shape[1])
    filler = {"binary": 0.5, "multiclass": 1.0 / max(width, 1)}.get(target_type)
    filler_row = [float(np.nanmean(labels[:, t])) for t in range(width)] if filler is None else [filler] * width
    values = np.array([filler_row if p is None else list(p) for p in predictions], dtype=np.float64)
    summary = property_metrics(values, labels, target_type)
    present = ~np.isnan(labels)
    if target_type == "multiclass":
        per_row = [float(present[i, 0] and values[i].argmax() == labels[i, 0]) for i in range(len(values))]
    elif target_type == "binary":
        right = (values >= 0.5) == (labels == 1.0)
        per_row = [float(right[i][present[i]].mean()) for i in range(len(values))]
    else:
        spread = np.where(present, labels, np.nan)
        ranges = np.nanmax(spread, axis=0) - np.nanmin(spread, axis=0)
        closeness = np.clip(1.0 - np.abs(values - np.nan_to_num(labels)) / np.where(ranges > 0, ranges, 1.0), 0.0, 1.0)
        per_row = [float(closeness[i][present[i]].mean()) for i in range(len(values))]
    unscored = {i: "no prediction; scored as an uninformative one" for i, p in enumerate(predictions) if p is None}
    return Scores(summary, per_row, unscored, answers=[None if p is None else [round(float(v), 4) for v in p] for p in predictions])
