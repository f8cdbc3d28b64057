"""Evaluation under `accelerate launch` on CPU: each process gets its own share of the rows, and the gathered
outcome holds every row exactly once, on every process."""

from __future__ import annotations

import json

import pytest

from tests.helpers import launch_two_cpu_processes
from zoo.evaluation.distributed import gather_outcome, shard_rows
from zoo.evaluation.runners import Outcome

# Run in each launched process: its share of 10 rows, then the gathered outcome (every row predicted by the
# process that owns it, row 7 failed), written to a file per rank (the launcher's shared stdout can mangle lines).
SCRIPT = """
import json
import os
import sys
from pathlib import Path

from zoo.evaluation.distributed import gather_outcome, leave_process_group, shard_rows
from zoo.evaluation.runners import Outcome

mine = list(shard_rows("generate", list(range(10))))
outcome = Outcome()
outcome.predictions.update({i: f"p{i}" for i in mine if i != 7})
outcome.failures.update({i: ("input", "bad row") for i in mine if i == 7})
merged = gather_outcome("generate", outcome)
result = {"mine": mine, "predicted": sorted(merged.predictions), "failed": sorted(merged.failures),
          "whole": list(shard_rows("retrieval", list(range(10))))}
Path(sys.argv[1], "rank" + os.environ["RANK"] + ".json").write_text(json.dumps(result))
leave_process_group()  # as `zoo eval` does last
"""


def test_one_process_evaluates_every_row_itself():
    assert list(shard_rows("generate", range(4))) == [0, 1, 2, 3]
    outcome = Outcome()
    outcome.predictions[0] = "x"
    assert gather_outcome("generate", outcome) is outcome


@pytest.mark.slow
def test_two_cpu_processes_split_the_rows_and_gather_each_once(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(SCRIPT)
    done = launch_two_cpu_processes(str(script), str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert sorted(r["mine"] for r in results) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]  # disjoint halves
    for r in results:  # every process ends with all rows, each once
        assert r["predicted"] == [0, 1, 2, 3, 4, 5, 6, 8, 9] and r["failed"] == [7]
        assert r["whole"] == list(range(10))  # retrieval compares all items with all texts: never sharded
