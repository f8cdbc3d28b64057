"""``zoo.load("hf:DIR")`` of a ``Qwen2AudioForConditionalGeneration`` checkpoint: the ``qwen2_audio`` family.

A tiny random Qwen2-Audio saved by transformers (sharded safetensors, its tokenizer with ``<|AUDIO|>``, its
Whisper feature extractor) stands in for ``Qwen/Qwen2-Audio-7B-Instruct``; the reference inputs come from
transformers' own ``Qwen2AudioProcessor``, so the token counts and log-mel features are checked too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from zoo.converters.families import convert_config
from zoo.converters.qwen2_audio import qwen2_audio_key_map
from zoo.errors import WeightsError
from zoo.spec import SpecError

RATE = 16_000
PROMPTS = ["<|audio_bos|><|AUDIO|><|audio_eos|>What is this sound?",
           "Listen: <|audio_bos|><|AUDIO|><|audio_eos|> then <|audio_bos|><|AUDIO|><|audio_eos|>Which is longer?"]
TINY_AUDIO = {"num_mel_bins": 16, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
              "d_model": 32, "max_source_positions": 100}  # a 2 s window: 200 mel frames, 100 encoder frames
TINY_QWEN2 = {"vocab_size": 640, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512}

# Qwen/Qwen2-Audio-7B-Instruct's config.json as public copies of it show it (transformers 4.45 left out defaults).
QWEN2_AUDIO_7B_CONFIG = {
    "architectures": ["Qwen2AudioForConditionalGeneration"], "audio_token_index": 151646,
    "audio_config": {"model_type": "qwen2_audio_encoder", "num_mel_bins": 128, "encoder_layers": 32,
                     "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "d_model": 1280,
                     "activation_function": "gelu", "scale_embedding": False, "max_source_positions": 1500},
    "model_type": "qwen2_audio",
    "text_config": {"bos_token_id": 151643, "eos_token_id": 151645, "intermediate_size": 11008,
                    "max_position_embeddings": 8192, "model_type": "qwen2", "rope_theta": 10000,
                    "rms_norm_eps": 1e-05, "sliding_window": 32768, "torch_dtype": "bfloat16", "use_mrope": False,
                    "vocab_size": 156032},
    "torch_dtype": "bfloat16", "vocab_size": 156032,
}


def clip(seconds: float, seed: int) -> np.ndarray:
    """A reproducible tone in noise, ``seconds`` long at 16 kHz."""
    t = np.arange(round(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).normal(0, 0.05, t.shape)
    return (0.3 * np.sin(2 * np.pi * (220 + 110 * seed) * t) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_qwen2_audio(tmp_path_factory):
    """A tiny Qwen2AudioForConditionalGeneration saved like the Hub's: sharded safetensors, its tokenizer (with
    ``<|AUDIO|>``, ``<|audio_bos|>``, ``<|audio_eos|>``) and Whisper feature extractor; and transformers' own
    processor for it."""
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    from encoders.text.tokenizers import load_tokenizer

    root = tmp_path_factory.mktemp("qwen2_audio")
    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]})
    tokenizer.bos_token = None  # as Qwen2's tokenizer: prompts start without a BOS token
    config = Qwen2AudioConfig(
        audio_config={"model_type": "qwen2_audio_encoder", **TINY_AUDIO},
        text_config={"model_type": "qwen2", **TINY_QWEN2},
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(5)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    model.save_pretrained(root, max_shard_size="200KB")
    tokenizer.save_pretrained(root)
    extractor = WhisperFeatureExtractor(feature_size=16, chunk_length=2)
    extractor.save_pretrained(root)
    tokenizer.padding_side = "left"
    return root, model, Qwen2AudioProcessor(extractor, tokenizer)


@pytest.fixture
def checkpoint_copy(tiny_qwen2_audio, tmp_path) -> Path:
    root, _, _ = tiny_qwen2_audio
    return Path(shutil.copytree(root, tmp_path / "ckpt"))


def reference_inputs(processor, prompts: list[str], clips: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """What transformers' Qwen2AudioProcessor makes of the prompts and clips (left padded)."""
    inputs = processor(text=prompts, audio=clips, sampling_rate=RATE, padding=True, return_tensors="pt")
    return {k: inputs[k] for k in ("input_ids", "attention_mask", "input_features", "feature_attention_mask")}


def test_clips_of_different_lengths_give_transformers_logits_and_generations(tiny_qwen2_audio):
    root, reference, hf_processor = tiny_qwen2_audio
    assert len(list(root.glob("model-*.safetensors"))) > 1  # sharded: the index names the files
    model = zoo.load(f"hf:{root}")
    clips = [clip(0.55, 0), clip(1.3, 1), clip(0.35, 2)]  # one for the first prompt, two for the second
    items = {"audio": [[(clips[0], RATE)], [(clips[1], RATE), (clips[2], RATE)]]}
    batch = model.processor(PROMPTS, items, padding_side="left")
    theirs = reference_inputs(hf_processor, PROMPTS, clips)

    # <|AUDIO|> expands per clip length exactly as transformers' processor does: 14, then 32 + 9 tokens.
    audio_id = reference.config.audio_token_index
    assert model.processor.placeholder_ids["audio"] == audio_id
    assert batch["modality_inputs"]["audio"]["tokens_per_item"].tolist() == [14, 32, 9]
    assert (batch["input_ids"] == audio_id).sum(1).tolist() == [14, 41]
    assert batch["input_ids"].tolist() == theirs["input_ids"].tolist()
    assert batch["attention_mask"].tolist() == theirs["attention_mask"].tolist()
    features = batch["modality_inputs"]["audio"]
    torch.testing.assert_close(features["input_features"], theirs["input_features"], atol=1e-5, rtol=1e-5)
    assert features["attention_mask"].tolist() == theirs["feature_attention_mask"].tolist()

    mask = theirs["attention_mask"]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # what generate uses for left padding
    with torch.no_grad():
        ours = model(**batch).logits
        expected = reference(**theirs, position_ids=positions).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], expected[real], atol=1e-4, rtol=1e-4)  # pad positions score nothing

    tokenizer = model.processor.tokenizer
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=8, do_sample=False, **ids)
        expected_ids = reference.generate(**theirs, max_new_tokens=8, do_sample=False, **ids)
    assert generated.tolist() == expected_ids[:, theirs["input_ids"].shape[1]:].tolist()


def test_a_loaded_checkpoint_saves_and_reloads_with_its_processor(tiny_qwen2_audio, tmp_path):
    root, _, _ = tiny_qwen2_audio
    model = zoo.load(f"hf:{root}")
    reloaded = zoo.load(model.save_pretrained(tmp_path / "saved"))
    batch = model.processor(PROMPTS[:1], {"audio": [[(clip(0.7, 3), RATE)]]})
    assert reloaded.processor(PROMPTS[:1], {"audio": [[(clip(0.7, 3), RATE)]]})["input_ids"].equal(batch["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, atol=0, rtol=0)


def test_the_tower_loads_its_weights_from_a_whole_checkpoint(tiny_qwen2_audio):
    root, reference, _ = tiny_qwen2_audio
    from encoders.audio.qwen2_audio import Qwen2AudioTower, Qwen2AudioTowerConfig

    tower = Qwen2AudioTower(Qwen2AudioTowerConfig(pretrained=str(root)))
    expected = reference.model.audio_tower.state_dict()
    assert tower.model.state_dict().keys() == expected.keys()
    for key, value in tower.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], atol=0, rtol=0)
    assert [tower.num_tokens(n) for n in (160 * 200, 8800, 321, 480)] == [50, 14, 1, 1]
    with pytest.raises(ValueError, match=r"320 samples gives no Qwen2-Audio token; clips need at least 321 samples"):
        tower.num_tokens(320)


def test_a_random_tower_masks_each_clip_to_the_tokens_its_length_gives():
    from encoders.audio.qwen2_audio import Qwen2AudioTower, Qwen2AudioTowerConfig

    tower = Qwen2AudioTower(Qwen2AudioTowerConfig(model_config=TINY_AUDIO, feature_extractor={"chunk_length": 2}))
    batch = tower.processor_class(tower.config)([(clip(0.3, 0), RATE), (clip(2.0, 1), RATE)])
    with torch.no_grad():
        out = tower.eval()(**batch.inputs)
    assert out.tokens.shape == (2, 50, 32)  # the 2 s window: 100 encoder frames pooled by 2
    assert out.mask.sum(1).tolist() == [tower.num_tokens(n) for n in batch.sizes] == [7, 50]


def test_the_7b_config_resolves_to_the_cards_spec():
    card = zoo.card("qwen2-audio-7b-instruct")
    revision = card.weights[0].revision
    conversion = convert_config(QWEN2_AUDIO_7B_CONFIG, "Qwen/Qwen2-Audio-7B-Instruct", revision,
                                "hf:Qwen/Qwen2-Audio-7B-Instruct")
    assert conversion.spec == card.spec
    assert (conversion.family, conversion.key_map, conversion.placeholder_ids) == (
        "qwen2_audio", "qwen2-audio", {"audio": 151646})


def test_an_unknown_or_missing_tensor_fails_the_load(checkpoint_copy):
    shard = sorted(checkpoint_copy.glob("model-*.safetensors"))[-1]
    state = load_file(str(shard))
    save_file({**state, "audio_tower.extra_adapter.weight": torch.zeros(2)}, str(shard))
    with pytest.raises(WeightsError, match="1 unexpected key.*encoders.audio.model.extra_adapter.weight"):
        zoo.load(f"hf:{checkpoint_copy}")
    save_file({**state, "model.audio_adapter.weight": torch.zeros(2)}, str(shard))
    with pytest.raises(ValueError, match="1 key.*fit no Qwen2-Audio rule.*model.audio_adapter.weight"):
        zoo.load(f"hf:{checkpoint_copy}")
    save_file(dict(list(state.items())[1:]), str(shard))
    with pytest.raises(WeightsError, match="missing key"):
        zoo.load(f"hf:{checkpoint_copy}")


def test_key_map_covers_both_layouts():
    in_memory = ["model.audio_tower.layers.0.fc1.weight", "model.multi_modal_projector.linear.bias",
                 "model.language_model.embed_tokens.weight", "lm_head.weight"]
    on_hub = ["audio_tower.layers.0.fc1.weight", "multi_modal_projector.linear.bias",
              "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"]
    ours = ["encoders.audio.model.layers.0.fc1.weight", "projectors.audio.proj.bias",
            "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"]
    for keys in (in_memory, on_hub):
        assert list(qwen2_audio_key_map(dict.fromkeys(keys)).values()) == ours


@pytest.mark.parametrize(("change", "message"), [
    ({"text_config": {"model_type": "llama"}}, "'llama' language model is not supported"),
    ({"audio_config": {"model_type": "whisper"}}, "audio_config model_type 'whisper' is not supported"),
    ({"audio_token_index": "151646"}, "audio_token_index must be"),
])
def test_configs_the_family_cannot_convert_are_refused(change, message):
    with pytest.raises(SpecError, match=message):
        convert_config({**QWEN2_AUDIO_7B_CONFIG, **change}, "some/repo", None, "hf:some/repo")


def test_a_checkpoint_whose_tokenizer_moved_the_audio_token_is_refused(checkpoint_copy):
    config = json.loads((checkpoint_copy / "config.json").read_text())
    config["audio_token_index"] -= 1
    (checkpoint_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="placeholder ids"):
        zoo.load(f"hf:{checkpoint_copy}")
