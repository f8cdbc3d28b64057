"""Retrieval scoring with a stable id for every item and caption, so a failure can never shift another pair.

Items are keyed by their row index and captions by their position among all captions of the run; embeddings
arrive as ``{id: vector}`` with failed ids simply absent. A row is scored only when its item and every one of
its captions embedded. A row that is not scored is a miss for each of its queries (it stays in the
denominators) and is in neither gallery, so adding a failing row changes no other row's ranks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Caption:
    """One caption: its stable id (position among all captions), the row index of its item, and its text."""

    id: int
    owner: int
    text: str


@dataclass
class RetrievalScores:
    """Metrics in both directions (rates already count unscored queries as misses), the top-1 hit of each row
    (0.0 for an unscored one), and the top-1 caption of each scored row."""

    metrics: dict[str, float] = field(default_factory=dict)
    per_row: dict[int, float] = field(default_factory=dict)
    top1: dict[int, Caption] = field(default_factory=dict)


def captions_of(rows: Sequence[Any], column: str) -> list[Caption]:
    """Every caption of ``rows`` (a string or a list of strings in ``column``), with ids in row order."""
    captions: list[Caption] = []
    for row in rows:
        texts = row.fields[column]
        for text in [texts] if isinstance(texts, str) else texts:
            captions.append(Caption(len(captions), row.index, text))
    return captions


def is_rate(name: str) -> bool:
    """Recall and mAP average over queries (an unscored query contributes 0); ranks do not scale."""
    return name.startswith(("recall", "mAP"))


def score_retrieval(
    row_ids: Sequence[int],
    captions: Sequence[Caption],
    items: Mapping[int, torch.Tensor],
    texts: Mapping[int, torch.Tensor],
    modality: str,
    metric_options: Mapping[str, Any],
) -> RetrievalScores:
    """Item -> text and text -> item metrics over the rows whose item and captions all embedded.

    Rates are scaled by (scored queries / all queries) in each direction; with nothing scored there are no
    metrics, and every row scores 0.
    """
    from tasks.metrics import retrieval_metrics, streaming_topk

    owned: dict[int, list[Caption]] = {i: [] for i in row_ids}
    for caption in captions:
        owned[caption.owner].append(caption)
    scored = [i for i in row_ids if i in items and all(c.id in texts for c in owned[i])]
    gallery = [c for i in scored for c in owned[i]]
    result = RetrievalScores(per_row=dict.fromkeys(row_ids, 0.0))
    if not scored:
        return result
    item_matrix = torch.stack([items[i] for i in scored])
    text_matrix = torch.stack([texts[c.id] for c in gallery])
    position = {c.id: k for k, c in enumerate(gallery)}
    row_position = {i: k for k, i in enumerate(scored)}
    forward = retrieval_metrics(item_matrix, text_matrix, [[position[c.id] for c in owned[i]] for i in scored], **metric_options)
    backward = retrieval_metrics(text_matrix, item_matrix, [[row_position[c.owner]] for c in gallery], **metric_options)
    for prefix, values, share in (
        (f"{modality}_to_text", forward, len(scored) / len(row_ids)),
        (f"text_to_{modality}", backward, len(gallery) / len(captions)),
    ):
        result.metrics.update({f"{prefix}/{k}": v * share if is_rate(k) else v for k, v in values.items()})
    best = streaming_topk(item_matrix, text_matrix, 1)[1][:, 0].tolist()  # ties: the lower caption id, as in the metrics
    for i, k in zip(scored, best, strict=True):
        result.top1[i] = gallery[k]
        result.per_row[i] = float(gallery[k].owner == i)
    return result
