"""Evaluation under `accelerate launch` on CPU: each process gets its own share of the rows, and the gathered
outcome holds every row exactly once, on every process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.evaluation.distributed import gather_outcome, shard_rows
from zoo.evaluation.runners import Outcome

REPO = Path(__file__).resolve().parents[1]

# Run in each launched process: its share of 10 rows, then the gathered outcome (every row predicted by the
# process that owns it, row 7 failed).
SCRIPT = """
import json
from zoo.evaluation.distributed import gather_outcome, shard_rows
from zoo.evaluation.runners import Outcome

mine = list(shard_rows("generate", list(range(10))))
outcome = Outcome()
outcome.predictions.update({i: f"p{i}" for i in mine if i != 7})
outcome.failures.update({i: ("input", "bad row") for i in mine if i == 7})
merged = gather_outcome("generate", outcome)
print("RESULT " + json.dumps({"mine": mine, "predicted": sorted(merged.predictions), "failed": sorted(merged.failures),
                             "whole": list(shard_rows("retrieval", list(range(10))))}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_evaluates_every_row_itself():
    assert list(shard_rows("generate", range(4))) == [0, 1, 2, 3]
    outcome = Outcome()
    outcome.predictions[0] = "x"
    assert gather_outcome("generate", outcome) is outcome


@pytest.mark.slow
def test_two_cpu_processes_split_the_rows_and_gather_each_once(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(SCRIPT)
    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), str(script)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(launch, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 2
    assert sorted(r["mine"] for r in results) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]  # disjoint halves
    for r in results:  # every process ends with all rows, each once
        assert r["predicted"] == [0, 1, 2, 3, 4, 5, 6, 8, 9] and r["failed"] == [7]
        assert r["whole"] == list(range(10))  # retrieval compares all items with all texts: never sharded
