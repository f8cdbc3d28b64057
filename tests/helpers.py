"""Small builders shared by tests: images and tiny specs made here, nothing downloaded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_FILES = {"optimizer.bin", "scheduler.bin", "random_states_0.pkl", "trainable.safetensors", "trainer_state.json",
                    "manifest.json"}  # what one process's checkpoint holds (zoo/training/checkpoint.py)

TINY_VIT = {
    "model_name": "vit_tiny_patch16_224",
    "model_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2},
}
TINY_BERT = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 600,
    "max_position_embeddings": 128,
}


def image(seed: int, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    """A random uint8 RGB image."""
    return np.random.RandomState(seed).randint(0, 256, (*size, 3), dtype=np.uint8)


def dual_encoder_spec() -> dict:
    """A tiny CLIP-style spec: timm ViT tower + BERT text tower with the bundled tokenizer."""
    return {
        "type": "dual-encoder",
        "towers": {"image": {"type": "timm", "config": TINY_VIT}},
        "text_tower": {
            "type": "hf-text",
            "config": {"model_config": TINY_BERT, "tokenizer": "bundled:tiny-bpe", "max_length": 32},
        },
        "embed_dim": 16,
    }


def image_molecule_lm_spec() -> dict:
    """tiny-test-vlm plus a tiny GCN molecule encoder: two modalities in one model."""
    import zoo

    spec = zoo.card("tiny-test-vlm").spec
    gnn = {"type": "gnn", "config": {"gnn_type": "gcn", "num_layers": 2, "hidden_size": 16}}
    return {
        **spec,
        "encoders": {**spec["encoders"], "molecule_graph": gnn},
        "projectors": {**spec["projectors"], "molecule_graph": {"type": "linear", "config": {}}},
    }


def launch_two_cpu_processes(*args: str, timeout: int = 400) -> subprocess.CompletedProcess[str]:
    """``accelerate launch`` of ``args`` as 2 gloo processes on the CPU, from the repository root, on a free
    port (``--cpu`` alone would start one process; see docs/distributed.md)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(port)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(launch + list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def run_and_kill_after_first_checkpoint(args: list[str], output_dir: Path, cwd: Path = REPO,
                                        timeout: float = 240) -> None:
    """Start ``python -m zoo.cli *args`` and SIGKILL it as soon as a checkpoint shows under
    ``output_dir/checkpoints``, then check it died mid-run: killed, a checkpoint left, no ``final/``. Every visible
    checkpoint must be complete, while it runs and after the kill (one is renamed into place only when whole)."""
    checkpoints = output_dir / "checkpoints"

    def visible() -> list[Path]:
        found = [d for d in checkpoints.iterdir() if not d.name.startswith(".")] if checkpoints.is_dir() else []
        for directory in found:
            assert CHECKPOINT_FILES <= {p.name for p in directory.iterdir()}, directory
        return found

    process = subprocess.Popen([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    try:
        while process.poll() is None and time.time() < deadline and not visible():
            time.sleep(0.005)
    finally:
        process.kill()  # SIGKILL; nothing if it has already ended (and been reaped by poll)
        stderr = process.communicate()[1].decode()
    assert process.returncode == -signal.SIGKILL, stderr[-3000:]
    assert visible(), f"no checkpoint within {timeout} s\n{stderr[-3000:]}"
    assert not (output_dir / "final").exists()  # killed mid-run


def card_sample_numbers(name: str, task: str, sample: str) -> dict[str, float]:
    """``{metric: value}`` of the card's ``eval_results`` rows for ``task`` on the shipped sample ``sample``."""
    from zoo.cards import card

    return {r["metric"]: r["value"] for r in card(name).eval_results
            if r.get("task") == task and r.get("sample") == sample}


def assert_reproduces(results: dict, expected: dict[str, float]) -> None:
    """An evaluation with no failed row whose metrics equal a card's stated numbers (to the 4 decimals cards give)."""
    import pytest

    assert results["num_failed"] == 0
    for metric, value in expected.items():
        assert results["metrics"][metric] == pytest.approx(value, abs=1e-4), metric
