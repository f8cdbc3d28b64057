"""Wrapper cost per encoder family: our encoder vs calling the underlying library directly, same weights.

For each family the same preprocessed batch goes through (a) our encoder's ``forward`` (tokens, mask,
pooled) and (b) the library's own call. Items/s is the median of ``--repeats`` rounds that alternate the
two sides in one process (so machine noise hits both); peak memory is the peak RSS of a fresh subprocess
per side doing one forward (CPU) or ``max_memory_allocated`` (CUDA). The
target is a wrapper cost under 5%. Models are built at random init from their real configs (no download).

    .venv/bin/python benchmarks/encoders.py [--families timm open-clip hf-clip bert gnn whisper]
        [--repeats 7] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place (shared helpers are then benchmarks._measure).
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import torch  # noqa: E402

from benchmarks._measure import peak_memory_mb  # noqa: E402

FAMILIES = ("timm", "open-clip", "hf-clip", "bert", "gnn", "whisper")


def _timm(batch: int) -> tuple[Callable, Callable, object, int]:
    from encoders.image.timm_encoder import TimmImageEncoder, TimmImageEncoderConfig

    ours = TimmImageEncoder(TimmImageEncoderConfig("vit_small_patch16_224"), load_pretrained=False)
    x = torch.randn(batch, 3, 224, 224)
    return (lambda: ours(pixel_values=x)), (lambda: ours.model.forward_features(x)), ours, batch


def _open_clip(batch: int):
    from encoders.image.open_clip_towers import OpenCLIPVisionConfig, OpenCLIPVisionEncoder

    ours = OpenCLIPVisionEncoder(OpenCLIPVisionConfig(model_name="ViT-B-32"), load_pretrained=False)
    x = torch.randn(batch, 3, 224, 224)
    return (lambda: ours(pixel_values=x)), (lambda: ours.visual(x)), ours, batch


def _hf_clip(batch: int):
    from encoders.image.hf_vision import HFVisionEncoder, HFVisionEncoderConfig

    config = HFVisionEncoderConfig(
        model_config={"model_type": "clip_vision_model", "patch_size": 32},
        image_processor={"image_processor_type": "CLIPImageProcessor"},
    )
    ours = HFVisionEncoder(config, load_pretrained=False)
    x = torch.randn(batch, 3, 224, 224)
    return (lambda: ours(pixel_values=x)), (lambda: ours.model(pixel_values=x, output_hidden_states=True)), ours, batch


def _bert(batch: int):
    from encoders.text.hf_encoder import HFTextEncoder, HFTextEncoderConfig

    config = HFTextEncoderConfig(model_config={"model_type": "bert"}, tokenizer="bundled:tiny-bpe")
    ours = HFTextEncoder(config, load_pretrained=False)
    ids = torch.randint(5, 500, (batch, 64))
    mask = torch.ones_like(ids)
    return (lambda: ours(input_ids=ids, attention_mask=mask)), (lambda: ours.model(input_ids=ids, attention_mask=mask)), ours, batch


def _gnn(batch: int):
    from torch_geometric.data import Batch

    from encoders.molecule import featurize_many
    from encoders.molecule.graph_encoder import GraphEncoderConfig, MoleculeGraphEncoder

    ours = MoleculeGraphEncoder(GraphEncoderConfig(gnn_type="gin"))
    smiles = ["CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "c1ccc2ccccc2c1", "CCN(CC)CCOC(=O)c1ccc(N)cc1"]
    graph = Batch.from_data_list(featurize_many((smiles * batch)[:batch]).graphs)
    return (lambda: ours(graph=graph)), (lambda: ours.gnn(graph.x, graph.edge_index, graph.edge_attr)), ours, batch


def _whisper(batch: int):
    from encoders.audio.whisper import WhisperAudioEncoder, WhisperAudioEncoderConfig

    tiny = {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536,
            "decoder_layers": 1, "decoder_attention_heads": 6, "decoder_ffn_dim": 1536, "num_mel_bins": 80}
    ours = WhisperAudioEncoder(WhisperAudioEncoderConfig(model_config=tiny), load_pretrained=False)
    feats = torch.randn(batch, 80, 3000)
    mask = torch.ones(batch, 3000, dtype=torch.long)
    return (lambda: ours(input_features=feats, attention_mask=mask)), (lambda: ours.model(feats)), ours, batch


BUILDERS = {"timm": (_timm, 16), "open-clip": (_open_clip, 32), "hf-clip": (_hf_clip, 32), "bert": (_bert, 64),
            "gnn": (_gnn, 256), "whisper": (_whisper, 4)}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_both(family: str, repeats: int, device: str) -> dict[str, float]:
    """Items/s of both sides, timed alternately in one process (median of ``repeats`` rounds each), so
    machine noise hits both equally."""
    torch.manual_seed(0)
    build, batch = BUILDERS[family]
    ours_call, direct_call, module, n = build(batch)
    module.eval().to(device)
    times: dict[str, list[float]] = {"ours": [], "direct": []}
    with torch.no_grad():
        ours_call(), direct_call()  # warm-up
        for _ in range(repeats):
            for side, call in (("ours", ours_call), ("direct", direct_call)):
                _sync(device)
                start = time.perf_counter()
                call()
                _sync(device)
                times[side].append(time.perf_counter() - start)
    return {side: n / sorted(t)[len(t) // 2] for side, t in times.items()} | {"batch": n}


def peak_memory(family: str, side: str, device: str) -> float:
    """Peak memory (MB) of one forward of one side, in this fresh process."""
    torch.manual_seed(0)
    build, batch = BUILDERS[family]
    ours_call, direct_call, module, _ = build(batch)
    module.eval().to(device)
    with torch.no_grad():
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        (ours_call if side == "ours" else direct_call)()
        _sync(device)
    return peak_memory_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", nargs=2, metavar=("FAMILY", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"peak_mb": peak_memory(*args.child, args.device)}))
        return
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, median of {args.repeats} alternating rounds")
    print(f"{'family':<10}{'batch':>6}{'ours it/s':>12}{'direct it/s':>13}{'cost':>8}{'ours MB':>10}{'direct MB':>11}")
    for family in args.families:
        speed = time_both(family, args.repeats, args.device)
        memory = {}
        for side in ("ours", "direct"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", family, side, "--device", args.device],
                capture_output=True, text=True, check=True,
            )
            memory[side] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
        cost = speed["direct"] / speed["ours"] - 1
        print(f"{family:<10}{speed['batch']:>6}{speed['ours']:>12.1f}{speed['direct']:>13.1f}{cost:>+8.1%}"
              f"{memory['ours']:>10.0f}{memory['direct']:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
