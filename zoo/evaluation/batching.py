"""Turn rows into model batches while isolating bad rows: a failure is pinned on its row, the rest go on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from tasks.data.manifest import Row

# Errors that mean "this row's input is bad", as opposed to a bug: they become row failures.
ROW_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, IndexError, TypeError, OSError)


def build_isolating(
    rows: Sequence[Row], build: Callable[[Sequence[Row]], Any]
) -> tuple[Any | None, list[Row], dict[int, str]]:
    """``build(rows)``; if it raises a row error, find the failing rows one by one and build the rest.

    Returns (batch or None, the rows in the batch, {row index: error message}).
    """
    try:
        return build(rows), list(rows), {}
    except ROW_ERRORS:
        pass
    good, failed = [], {}
    for row in rows:
        try:
            build([row])
            good.append(row)
        except ROW_ERRORS as err:
            failed[row.index] = f"{type(err).__name__}: {err}"
    return (build(good) if good else None), good, failed


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def embed_isolating(
    items: Sequence[tuple[int, Any]],
    process: Callable[[list[Any]], Any],
    embed: Callable[[Any], torch.Tensor],
    batch_size: int,
    on_chunk: Callable[[int], None] | None = None,
    *,
    as_float_cpu: bool = True,
) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
    """Embed ``(index, item)`` pairs in batches: ``process(items)`` builds a batch, ``embed(batch)`` gives
    ``[B, D]``. Returns float32 CPU vectors keyed by index (``as_float_cpu=False``: where and in the dtype
    ``embed`` gave them) and ``{index: error}`` for items that failed."""
    vectors: dict[int, torch.Tensor] = {}
    failures: dict[int, str] = {}
    for chunk in chunks(list(items), batch_size):
        rows = [Row(i, {"item": item}) for i, item in chunk]
        batch, good, failed = build_isolating(rows, lambda rs: process([r.fields["item"] for r in rs]))
        failures.update(failed)
        if batch is not None:
            with torch.no_grad():
                out = embed(batch)
            if as_float_cpu:
                out = out.float().cpu()
            vectors.update({r.index: v for r, v in zip(good, out, strict=True)})
        if on_chunk is not None:
            on_chunk(len(chunk))
    return vectors, failures
