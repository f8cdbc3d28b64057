"""Applying each item's chosen templates, for many items at once: in this process, or spread over a pool of
forked worker processes, since rdchiral's per-outcome work is Python and holds one core per item.

    for outcomes in apply_templates("retro", [(product, templates)], workers=2):
        ...  # outcomes[j]: what templates[j] gives the product (None: rdchiral could not build it)

The pool is made once per worker count and reused by later calls (its workers keep their prepared templates);
it is forked, so it needs no ``if __name__ == "__main__"`` guard, and where ``fork`` is not available (macOS,
Windows) the work runs in this process.
"""

from __future__ import annotations

import atexit
import multiprocessing
from collections.abc import Iterator, Sequence
from multiprocessing.pool import Pool

from tasks.data.templates import RDCHIRAL_ERROR, TemplateError, apply_forward, apply_retro, forward_template

DIRECTIONS = ("retro", "forward")
_POOLS: dict[int, Pool] = {}


def apply_templates(
    direction: str, jobs: Sequence[tuple[str, Sequence[str]]], workers: int = 1
) -> Iterator[list[list[str] | None]]:
    """For each ``(item, templates)`` job, in order: what each template gives the item (retro: a product's
    reactant sets; forward: a reactant set's products), ``None`` where rdchiral failed building the outcome.

    An unparsable item raises ``ValueError`` naming it, at that item's place in the iteration."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    tasks = [(direction, item, tuple(templates)) for item, templates in jobs]
    if workers == 1 or len(tasks) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return map(_apply_job, tasks)
    return _pool(workers).imap(_apply_job, tasks)


def _apply_job(task: tuple[str, str, tuple[str, ...]]) -> list[list[str] | None]:
    direction, item, templates = task
    return [_apply_one(direction, template, item) for template in templates]


def _apply_one(direction: str, template: str, item: str) -> list[str] | None:
    try:
        if direction == "retro":
            return apply_retro(template, item)
        return apply_forward(forward_template(template), item)
    except TemplateError as err:
        if err.failure.reason != RDCHIRAL_ERROR:
            raise
        return None


def _pool(workers: int) -> Pool:
    if workers not in _POOLS:
        _POOLS[workers] = multiprocessing.get_context("fork").Pool(workers)
    return _POOLS[workers]


@atexit.register
def _close_pools() -> None:
    for pool in _POOLS.values():
        pool.terminate()
    _POOLS.clear()
