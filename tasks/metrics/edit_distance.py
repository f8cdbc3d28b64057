"""Levenshtein edit distance between two strings (insertions, deletions, substitutions, each cost 1)."""

from __future__ import annotations


def levenshtein_distance(first: str, second: str) -> int:
    """Minimum number of single-character edits turning ``first`` into ``second`` (O(len * len) DP)."""
    if len(first) < len(second):
        first, second = second, first
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, 1):
        current = [i]
        for j, b in enumerate(second, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]
