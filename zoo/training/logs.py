"""``metrics.jsonl``: a ``data`` record first (rows, examples, failed rows), then one record per optimizer step
(step, epoch, loss, lr, grad_norm, samples_per_s, and ``validation`` metrics when they were computed).

A resumed run first cuts the file back to the checkpoint's step, so steps redone after a kill appear once.
Only the main process writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.io import atomic_write

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def records(self) -> list[dict[str, Any]]:
        """The parsed records (a line cut short by a kill is skipped)."""
        if not self.path.is_file():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def start(self, header: dict[str, Any], resumed_step: int | None) -> None:
        """A fresh log with ``header``, or (resuming) the existing one cut back to ``resumed_step``."""
        if not self.enabled:
            return
        if resumed_step is None:
            kept = [header]
        else:
            kept = [r for r in self.records() if r.get("event") == "data" or r.get("step", 0) <= resumed_step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))

    def append(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
