"""Issue 16: processors give float32, models may be bf16/fp16. Floating-point inputs follow the model's (or that
encoder's) dtype on their way in; ids, masks, codes and graph categories stay integer. Every encoder kind with a
tiny config runs in bf16 on real processor output, close to its float32 output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zoo
from tests.helpers import TINY_BERT, TINY_VIT, dual_encoder_spec, image, image_molecule_lm_spec
from tests.test_audio import TINY_CLAP, TINY_DAC, TINY_SPECTROGRAM, TINY_WHISPER
from zoo.processing import MultimodalBatch, move_to

BF16 = torch.bfloat16
HF_CLIP_VISION = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                  "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
OPEN_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 24, "heads": 2, "layers": 1}}


def _sound(seed: int, seconds: float = 0.4) -> tuple[np.ndarray, int]:
    """A 16 kHz chirp with a little noise: real sound, deterministic."""
    t = np.arange(int(16000 * seconds)) / 16000
    noise = 0.01 * np.random.RandomState(seed).randn(len(t))
    return (0.3 * np.sin(2 * np.pi * (200 + 300 * (seed + 1) * t) * t) + noise).astype(np.float32), 16000


IMAGES = [image(0, (32, 32)), image(1, (32, 32))]
SOUNDS = [_sound(0), _sound(1, 0.6)]
# encoder kind -> (modality, config, items): every kind with a tiny config in the tests
ENCODERS = {
    "timm": ("image", TINY_VIT, IMAGES),
    "hf-vision": ("image", {"model_config": HF_CLIP_VISION, "image_processor": {
        "image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 32},
        "crop_size": {"height": 32, "width": 32}}}, IMAGES),
    "open-clip-vision": ("image", {"model_name": "ViT-B-32", "model_kwargs": OPEN_CLIP}, IMAGES),
    "hf-text": ("text", {"model_config": TINY_BERT, "tokenizer": "bundled:tiny-bpe"}, ["a red circle", "blue"]),
    "gnn": ("molecule_graph", {"gnn_type": "gcn", "num_layers": 2, "hidden_size": 16}, ["CCO", "c1ccccc1O"]),
    "spectrogram-transformer": ("audio", TINY_SPECTROGRAM, SOUNDS),
    "whisper": ("audio", {"model_config": TINY_WHISPER}, SOUNDS),
    "clap-audio": ("audio", {"model_config": TINY_CLAP, "feature_extractor": {"max_length_s": 2}}, SOUNDS),
    "clap-text": ("text", {"model_config": {"vocab_size": 600, "hidden_size": 16, "num_hidden_layers": 1,
                                            "num_attention_heads": 2, "intermediate_size": 32, "pad_token_id": 0,
                                            "projection_dim": 8},
                           "tokenizer": "bundled:tiny-bpe"}, ["a dog barking", "rain"]),
    "audio-codec": ("audio", {"model_config": TINY_DAC, "hidden_size": 32, "max_seconds": 1.0}, SOUNDS),
}


def _encoder_model(kind: str) -> torch.nn.Module:
    modality, config, _ = ENCODERS[kind]
    torch.manual_seed(0)
    return zoo.build({"type": "encoder", "modality": modality, "encoder": {"type": kind, "config": config}}).eval()


@pytest.mark.parametrize("kind", sorted(ENCODERS))
def test_every_encoder_runs_in_bf16_on_processor_output_close_to_float32(kind):
    model = _encoder_model(kind)
    items = ENCODERS[kind][2]
    with torch.no_grad():
        reference = model.encode(items)
        out = model.to(BF16).encode(items)
    assert out.tokens.dtype == out.pooled.dtype == BF16 and out.mask.dtype == torch.bool
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    assert torch.equal(out.mask, reference.mask)
    similarity = F.cosine_similarity(out.pooled.float(), reference.pooled, dim=-1)
    assert bool((similarity > 0.95).all()), f"{kind}: bf16 vs float32 cosine {similarity.tolist()}"


def test_integer_inputs_stay_integer_and_floats_follow_the_dtype():
    from encoders.molecule.graph_encoder import GraphEncoderConfig
    from encoders.molecule.graph_processor import MoleculeGraphProcessor

    graph = MoleculeGraphProcessor(GraphEncoderConfig())(["CCO"]).inputs["graph"]
    graph.weight = torch.ones(graph.num_nodes)  # a float node feature, as a custom featurizer might add
    inputs = {"input_ids": torch.tensor([[1, 2]]), "mask": torch.tensor([[True, False]]),
              "pixel_values": torch.zeros(1, 3, 2, 2), "graph": graph}
    moved = MultimodalBatch(modality_inputs={"m": inputs}).to("cpu")
    assert moved["modality_inputs"]["m"]["pixel_values"].dtype == torch.float32  # no dtype: only the device
    cast = move_to(inputs, "cpu", torch.float16)
    assert cast["input_ids"].dtype == torch.long and cast["mask"].dtype == torch.bool
    assert cast["pixel_values"].dtype == torch.float16
    assert cast["graph"].x.dtype == cast["graph"].edge_index.dtype == cast["graph"].batch.dtype == torch.long
    assert cast["graph"].weight.dtype == torch.float16


def test_precomputed_codec_codes_stay_integer_in_a_bf16_model():
    config = {"model_config": TINY_DAC, "inputs": "codes", "hidden_size": 16}
    model = zoo.build({"type": "encoder", "modality": "audio_codec",
                       "encoder": {"type": "audio-codec", "config": config}}).eval().to(BF16)
    codes = [np.random.RandomState(0).randint(0, 16, (3, 5))]
    assert model.processor("audio_codec", codes).inputs["codes"].dtype == torch.long
    with torch.no_grad():
        assert model.encode(codes).tokens.dtype == BF16


def test_multimodal_lm_generates_text_in_bf16_from_images_and_molecules():
    """The issue's failure: a bf16 VLM fed float32 pixel values by its processor."""
    model = zoo.build(image_molecule_lm_spec()).eval().to(BF16)
    prompts = ["<image> shows <molecule>", "What is <molecule>?"]
    items = {"image": [[image(0)], []], "molecule_graph": [["CCO"], ["CC(=O)O"]]}
    texts = model.generate_text(prompts, items, max_new_tokens=3, do_sample=False)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    batch = model.processor(prompts, items, targets=["ethanol", "acetic acid"])
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_fingerprint_heads_and_dual_encoders_run_in_bf16():
    """A fingerprint encoder has no weights: its float input takes the model's dtype (the head's)."""
    templates = zoo.build({"type": "template-classifier", "modality": "smiles", "num_templates": 3,
                           "encoder": {"type": "fingerprint", "config": {"size": 64}}, "hidden_sizes": [8]})
    inputs = templates.processor("smiles", ["CCO", "c1ccccc1"]).inputs
    with torch.no_grad():
        assert templates.eval().to(BF16)(**inputs).dtype == BF16
    dual = zoo.build(dual_encoder_spec()).eval().to(BF16)
    with torch.no_grad():
        assert dual.embed("image", IMAGES).dtype == dual.embed_text(["a circle"]).dtype == BF16
        assert dual.embed_pooled("image", torch.ones(1, 32)).dtype == BF16  # cached float32 tower features
