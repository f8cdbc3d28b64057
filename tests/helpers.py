"""Small builders shared by tests: images and tiny specs made here, nothing downloaded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

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
