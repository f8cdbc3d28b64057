"""Scores broken down by a row attribute: the mean score of each group of rows.

One function serves every breakdown: VQA accuracy by answer type (``yes_no``, ``number``, ``other``) and a
classifier's per-class accuracy (rows grouped by their true class) are both means of per-row scores by group.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.metrics._validation import check_not_empty, check_same_length


def group_means(scores: Sequence[float], groups: Sequence[str]) -> dict[str, float]:
    """``{group: mean score of its rows}`` in sorted group order, each mean over all of the group's rows (so a
    failed row, scored 0, stays in its group's denominator)."""
    check_same_length("scores", scores, "groups", groups)
    check_not_empty("scores", scores)
    members: dict[str, list[float]] = {}
    for score, group in zip(scores, groups, strict=True):
        members.setdefault(group, []).append(float(score))
    return {group: sum(members[group]) / len(members[group]) for group in sorted(members)}
