"""Evaluation under ``accelerate launch``: each process runs a contiguous share of the rows and the outcomes
are gathered (accelerate ``gather_object``), so every row is evaluated exactly once and every process ends
with the same results. Outside a launched run (``WORLD_SIZE`` unset or 1) nothing changes.

Only per-row task kinds are sharded; retrieval and zero-shot classification compare every item with every
text, so each process runs them whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

SHARDED_KINDS = ("generate", "predict", "regress", "multiple-choice")


def _state() -> Any:
    """accelerate's ``PartialState`` (which joins the process group) when a launcher started several
    processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # PartialState joins a gloo group on CPU only when told it runs on the CPU (Accelerator reads this flag
    # itself; PartialState does not), so a `zoo eval` launched on CPU would otherwise run every row twice.
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    return state if state.num_processes > 1 else None


def is_main_process() -> bool:
    state = _state()
    return state is None or state.is_main_process


def leave_process_group() -> None:
    """End a launched process's part in the group it joined for evaluation. Call it last, in a process that
    only evaluates: one that exits with its gloo group still open can abort ("terminate called without an
    active exception") and fail the whole launch."""
    state = _state()
    if state is not None:
        state.wait_for_everyone()
        state.destroy_process_group()


def shard_rows(kind: str, rows: Sequence[Any]) -> Sequence[Any]:
    """This process's share of ``rows`` (all of them for a single process or an unsharded kind)."""
    state = _state()
    if state is None or kind not in SHARDED_KINDS:
        return rows
    with state.split_between_processes(list(rows)) as mine:
        return mine


def gather_outcome(kind: str, outcome: Any) -> Any:
    """Merge the processes' predictions and failures; a row reported by two processes is a bug and raises."""
    state = _state()
    if state is None or kind not in SHARDED_KINDS:
        return outcome
    from accelerate.utils import gather_object

    from zoo.evaluation.runners import Outcome

    merged = Outcome()
    for predictions, failures in gather_object([(outcome.predictions, outcome.failures)]):
        twice = (set(predictions) | set(failures)) & (set(merged.predictions) | set(merged.failures))
        if twice:
            raise RuntimeError(f"rows {sorted(twice)[:5]} were evaluated by more than one process")
        merged.predictions.update(predictions)
        merged.failures.update(failures)
    return merged
