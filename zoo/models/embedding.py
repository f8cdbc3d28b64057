"""Batched, item-isolating embedding for ``EncoderModel.embed``/``encode`` and ``DualEncoder.embed``: one bad item
is named by its index and never changes another item's vector, and the model runs under inference mode."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from encoders.base import InvalidInputError

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "report")
_LISTED_FAILURES = 20  # an error message names this many failed items; ``errors`` holds them all


class ItemsFailedError(InvalidInputError):
    """Items that could not be processed. ``errors`` maps each failed item's index (its position in the list
    given) to the reason; ``total`` is how many items were given."""

    def __init__(self, errors: Mapping[int, str], total: int, done: str = "embedded", hint: str = "") -> None:
        self.errors = dict(sorted(errors.items()))
        self.total = total
        lines = [f"{len(self.errors)} of {total} items could not be processed, so none was {done}:"]
        lines += [f"  item {index}: {message}" for index, message in list(self.errors.items())[:_LISTED_FAILURES]]
        if len(self.errors) > _LISTED_FAILURES:
            lines.append(f"  ... and {len(self.errors) - _LISTED_FAILURES} more (all of them in the error's .errors)")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


@dataclass
class EmbedResult:
    """What ``embed(..., on_error="report")`` returns: ``embeddings[k]`` is the vector of input item
    ``indices[k]`` (the items that worked, in input order); ``errors`` maps each failed item's index to why."""

    embeddings: torch.Tensor
    indices: list[int]
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.indices) + len(self.errors)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __len__(self) -> int:
        return self.total

    def summary(self) -> str:
        """Counts first, then one line per failed item (as ``featurize_many``'s summary)."""
        head = f"embedded {len(self.indices)} of {self.total} items"
        if not self.errors:
            return head + "; none failed"
        return "\n".join([f"{head}; {len(self.errors)} failed:", *(f"  item {i}: {m}" for i, m in self.errors.items())])


# A processor names an item by its position in the list it was given ("molecule item 0: ..."); an item that
# failed on its own was given alone, so that position is 0. Put the item's position among the caller's items.
_ALONE = re.compile(r"^((?:\w+: )?[A-Za-z_ ]*?\bitem )0\b")


def _renumber(message: str, index: int) -> str:
    return _ALONE.sub(lambda m: f"{m.group(1)}{index}", message, count=1)


def as_item_list(items: Sequence[Any], caller: str) -> list[Any]:
    """``items`` as a list; one string or bytes object (which would be read as many one-character items) is a
    TypeError that says to wrap it in a list."""
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{caller} takes a list of items, not one {type(items).__name__}; wrap it: [{items!r:.60}]")
    return list(items)


def check_embed_options(batch_size: int, on_error: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(map(repr, ON_ERROR))}, got {on_error!r}")


def process_isolating(items: Sequence[Any], process: Callable[[list[Any]], Any]) -> Any:
    """``process(items)`` as one batch; if an item cannot be processed, try each alone and raise one
    :class:`ItemsFailedError` naming every item that fails (``zoo.evaluation.batching.build_isolating``)."""
    from tasks.data.manifest import Row
    from zoo.evaluation.batching import build_isolating

    rows = [Row(i, {"item": item}) for i, item in enumerate(items)]
    batch, _, failed = build_isolating(rows, lambda rs: process([r.fields["item"] for r in rs]))
    if failed:
        raise ItemsFailedError({i: _renumber(m, i) for i, m in failed.items()}, len(items), "encoded",
                               "leave them out, or use embed(..., on_error='report') for the pooled vectors of the rest")
    return batch


def embed_in_batches(
    items: Sequence[Any],
    process: Callable[[list[Any]], Any],
    forward: Callable[[Any], torch.Tensor],
    width: int,
    dtype: torch.dtype,
    device: torch.device,
    batch_size: int,
    on_error: str,
) -> torch.Tensor | EmbedResult:
    """Embed ``items`` ``batch_size`` at a time: ``process(items)`` builds a batch (on the CPU, with autograd as
    the caller has it), ``forward(batch)`` gives ``[B, width]`` and runs under ``torch.inference_mode``.

    An item whose processing fails is left out of its batch (``zoo.evaluation.batching.embed_isolating``), so it
    never changes another item's vector. With ``on_error="raise"`` every item is processed (the model stops
    running at the first failure) and one :class:`ItemsFailedError` names each failed item; with "report" the
    result is an :class:`EmbedResult`. Vectors stay on the model's device in its dtype; called outside inference
    mode they are ordinary tensors (usable in autograd, ``requires_grad`` False)."""
    from zoo.evaluation.batching import ROW_ERRORS, embed_isolating

    check_embed_options(batch_size, on_error)
    stop = {"failed": False}  # "raise": once an item fails nothing is returned, so the model need not run

    def build(values: list[Any]) -> Any:
        try:
            return process(values)
        except ROW_ERRORS:
            stop["failed"] = True
            raise

    def run(batch: Any) -> torch.Tensor:
        if stop["failed"] and on_error == "raise":
            return torch.empty(len(batch), 0)
        with torch.inference_mode():
            return forward(batch)

    vectors, failed = embed_isolating(list(enumerate(items)), build, run, batch_size, as_float_cpu=False)
    errors = {i: _renumber(m, i) for i, m in sorted(failed.items())}
    if errors and on_error == "raise":
        raise ItemsFailedError(errors, len(items), "embedded",
                               "pass on_error='report' to embed the other items and get the failures back")
    indices = sorted(vectors)
    if indices:
        embeddings = torch.stack([vectors[i] for i in indices])  # outside inference mode: an ordinary tensor
    else:
        embeddings = torch.empty(0, width, dtype=dtype, device=device)
    if errors:
        logger.info("embedded %d of %d items; %d failed (first: item %d: %s)", len(indices), len(items),
                       len(errors), *next(iter(errors.items())))
    return embeddings if on_error == "raise" else EmbedResult(embeddings, indices, errors)


def outside_inference(value: Any) -> Any:
    """Inference tensors (and dataclasses holding them) made ordinary: cloned unless the caller is itself in
    inference mode, so the result can feed autograd later."""
    if torch.is_inference_mode_enabled():
        return value
    if isinstance(value, torch.Tensor):
        return value.clone() if value.is_inference() else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: outside_inference(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value
