"""``zoo.load("hf:DIR")`` of LLaVA-NeXT checkpoints: a tiny random ``LlavaNextForConditionalGeneration`` (Llama or
Mistral language model) saved with ``save_pretrained`` with its tokenizer and LLaVA-NeXT image processor, loaded
through the ``llava_next`` family, compared with transformers' own forward and generate on images of different
aspect ratios, so different tilings and token counts, in one batch. Nothing is downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from encoders.image.hf_vision_anyres import anyres_layout
from tests.helpers import image
from zoo.converters.families import convert_config
from zoo.converters.llava_next import llava_next_key_map
from zoo.spec import SpecError

TINY_VIT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
            "image_size": 32, "patch_size": 8}
TINY_LLAMA = {"model_type": "llama", "vocab_size": 640, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 512, "tie_word_embeddings": False}
# tiles of 32 px (a 4x4 grid of 8-px patches each). The tall image is tiled 2x1 and loses feature columns to
# unpadding, the wide one 1x2 and loses rows: 16 + 8 * (2 + 1) and 16 + 2 * (8 + 1) tokens.
PINPOINTS = [[32, 64], [64, 32], [64, 64]]
TALL, WIDE = (60, 20), (20, 90)  # (H, W)
PROMPTS = ["[INST] <image>\nWhat is this? [/INST]", "[INST] Compare <image>\nwith this one, in a few words [/INST]"]
TINY_MISTRAL = {**TINY_LLAMA, "model_type": "mistral", "sliding_window": None, "rope_theta": 1000000.0}

# config.json of llava-hf/llava-v1.6-mistral-7b-hf as transformers 4.39 wrote it (defaults left out).
MISTRAL_7B_CONFIG = {
    "architectures": ["LlavaNextForConditionalGeneration"], "ignore_index": -100,
    "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    "image_token_index": 32000, "model_type": "llava_next", "projector_hidden_act": "gelu",
    "text_config": {"_name_or_path": "mistralai/Mistral-7B-Instruct-v0.2", "architectures": ["MistralForCausalLM"],
                    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
                    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
                    "sliding_window": None, "torch_dtype": "bfloat16", "vocab_size": 32064},
    "torch_dtype": "float16", "transformers_version": "4.39.0.dev0", "use_image_newline_parameter": True,
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                      "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                      "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064,
}


def save_tiny_llava_next(root: Path, text: dict) -> tuple[Path, torch.nn.Module]:
    """A tiny LlavaNextForConditionalGeneration with the language model ``text`` saved in ``root`` as
    llava-hf/llava-v1.6-* are: safetensors, its tokenizer (with ``<image>``), its LlavaNextImageProcessor."""
    from transformers import (
        AutoConfig,
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
    )

    from encoders.text.tokenizers import load_tokenizer

    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    fields = {k: v for k, v in text.items() if k != "model_type"}
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**TINY_VIT).to_dict(),
        text_config=AutoConfig.for_model(text["model_type"], **fields).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=PINPOINTS,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(5)
    model = LlavaNextForConditionalGeneration(config).eval()
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                            image_grid_pinpoints=PINPOINTS).save_pretrained(root)
    return root, model


@pytest.fixture(scope="module")
def tiny_llama_next(tmp_path_factory):
    return save_tiny_llava_next(tmp_path_factory.mktemp("llama"), TINY_LLAMA)


@pytest.fixture(scope="module")
def tiny_mistral_next(tmp_path_factory):
    return save_tiny_llava_next(tmp_path_factory.mktemp("mistral"), TINY_MISTRAL)


@pytest.mark.parametrize("checkpoint", ["tiny_llama_next", "tiny_mistral_next"])
def test_two_aspect_ratios_in_one_batch_give_transformers_logits_and_generations(checkpoint, request):
    root, reference = request.getfixturevalue(checkpoint)
    model = zoo.load(f"hf:{root}")
    assert model.spec.encoders["image"].type == "hf-vision-anyres"
    processor = model.processor
    pictures = [image(0, TALL), image(1, WIDE)]
    batch = processor(PROMPTS, {"image": [[pictures[0]], [pictures[1]]]}, padding_side="left")
    pixels = batch["modality_inputs"]["image"]
    counts = pixels["tokens_per_item"].tolist()
    assert counts == [40, 34] and not batch["attention_mask"].all()  # and the first prompt is left-padded
    # each count is transformers' own: its processor expands <image> from the same image sizes
    from transformers import LlavaNextProcessor

    theirs_processor = LlavaNextProcessor(image_processor=processor.modality_processors["image"].image_processor,
                                          tokenizer=processor.tokenizer, patch_size=8,
                                          num_additional_image_tokens=1, vision_feature_select_strategy="default")
    assert counts == theirs_processor._get_num_multimodal_tokens(image_sizes=[TALL, WIDE])["num_image_tokens"]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "pixel_values": pixels["pixel_values"], "image_sizes": pixels["image_sizes"]}
    with torch.no_grad():
        ours, theirs = model(**batch).logits, reference(**inputs).logits
        mask = batch["attention_mask"].bool()
        torch.testing.assert_close(ours[mask], theirs[mask], atol=1e-4, rtol=1e-4)
        generated = model.generate(**batch, max_new_tokens=6, do_sample=False)
        expected_ids = reference.generate(**inputs, max_new_tokens=6, do_sample=False,
                                          pad_token_id=processor.tokenizer.pad_token_id)
    assert generated.tolist() == expected_ids[:, inputs["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("size", [(336, 336), (480, 640), (640, 480), (1024, 333), (333, 1024), (100, 1500),
                                  (2000, 90), (719, 721)])
def test_token_counts_are_transformers_at_the_real_geometry(size):
    """llava-v1.6's geometry (336-px tiles of 24x24 patches, its five pinpoints): our layout's count is the one
    transformers' processor expands ``<image>`` to, for sizes whose unpadding cuts rows, columns or nothing."""
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    from encoders.text.tokenizers import load_tokenizer

    pinpoints = MISTRAL_7B_CONFIG["image_grid_pinpoints"]
    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    theirs = LlavaNextProcessor(image_processor=LlavaNextImageProcessor(image_grid_pinpoints=pinpoints),
                                tokenizer=tokenizer, patch_size=14, num_additional_image_tokens=1,
                                vision_feature_select_strategy="default")
    expected = theirs._get_number_of_features(*size, 336, 336) - 1  # the CLS token is dropped
    assert anyres_layout(size, pinpoints, 336, (24, 24)).num_tokens((24, 24)) == expected


def test_the_mistral_7b_config_resolves_to_its_spec():
    """The real checkpoint's config: CLIP-L/336 anyres tower, Mistral fields from the config or MistralConfig's
    defaults (``sliding_window`` null kept, ``rope_theta`` 1e6), the repo's tokenizer, pinned to the revision."""
    repo, revision = "llava-hf/llava-v1.6-mistral-7b-hf", "2424fdd47412fccc66d91719126b420e9fbd7065"
    conversion = convert_config(MISTRAL_7B_CONFIG, repo, revision, f"hf:{repo}")
    pinned = {"path": repo, "revision": revision}
    assert conversion.spec == {
        "type": "multimodal-lm", "seed": 0,
        "encoders": {"image": {"type": "hf-vision-anyres", "config": {
            "pretrained": repo, "revision": revision, "vision_feature_layer": -2,
            "feature_select_strategy": "default"}}},
        "projectors": {"image": {"type": "anyres-mlp", "config": {"depth": 2, "activation": "gelu"}}},
        "backbone": {"type": "hf-causal-lm", "config": {"model_config": {
            "model_type": "mistral", "vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-05,
            "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False}}},
        "tokenizer": {"type": "pretrained", **pinned},
    }
    assert (conversion.family, conversion.key_map, conversion.placeholder_ids) == (
        "llava_next", "llava-next", {"image": 32000})


def test_one_unpadded_image_after_save_and_reload_gives_transformers_logits(tiny_mistral_next, tmp_path):
    root, reference = tiny_mistral_next
    zoo.load(f"hf:{root}").save_pretrained(tmp_path / "saved")
    model = zoo.load(str(tmp_path / "saved"))  # the resolved processor config travels with the model
    batch = model.processor([PROMPTS[1]], {"image": [[image(1, WIDE)]]})
    pixels = batch["modality_inputs"]["image"]
    with torch.no_grad():
        ours = model(**batch).logits
        theirs = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           pixel_values=pixels["pixel_values"], image_sizes=pixels["image_sizes"]).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_a_language_model_other_than_llama_or_mistral_is_refused():
    config = {**MISTRAL_7B_CONFIG, "text_config": {**MISTRAL_7B_CONFIG["text_config"], "model_type": "qwen2"}}
    with pytest.raises(SpecError, match="'qwen2' language model is not supported.*llama or mistral"):
        convert_config(config, "org/repo", None, "hf:org/repo")
    scaled = {**MISTRAL_7B_CONFIG, "text_config": {**MISTRAL_7B_CONFIG["text_config"],
                                                   "rope_scaling": {"type": "linear", "factor": 2.0}}}
    with pytest.raises(SpecError, match="RoPE scaling"):
        convert_config(scaled, "org/repo", None, "hf:org/repo")


def test_the_key_map_covers_both_layouts_and_rejects_strangers():
    in_memory = ["model.vision_tower.encoder.layers.0.mlp.fc1.weight", "model.multi_modal_projector.linear_2.bias",
                 "model.image_newline", "model.language_model.embed_tokens.weight", "lm_head.weight"]
    on_hub = ["vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight", "multi_modal_projector.linear_2.bias",
              "image_newline", "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"]
    ours = ["encoders.image.model.encoder.layers.0.mlp.fc1.weight", "projectors.image.mlp.layers.2.bias",
            "projectors.image.newline", "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"]
    for keys in (in_memory, on_hub):
        assert list(llava_next_key_map(dict.fromkeys(keys)).values()) == ours
    with pytest.raises(ValueError, match="1 key.*image_newline_extra"):
        llava_next_key_map(dict.fromkeys([*on_hub, "image_newline_extra"]))


@pytest.fixture
def checkpoint_copy(tiny_mistral_next, tmp_path) -> Path:
    root, _ = tiny_mistral_next
    return Path(shutil.copytree(root, tmp_path / "ckpt"))


def test_an_unknown_or_missing_tensor_fails_the_load(checkpoint_copy):
    path = checkpoint_copy / "model.safetensors"
    state = load_file(str(path))
    save_file({**state, "model.image_newline_2": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="model.image_newline_2"):
        zoo.load(f"hf:{checkpoint_copy}")
    save_file({k: v for k, v in state.items() if "image_newline" not in k}, str(path))
    with pytest.raises(ValueError, match="missing key.*projectors.image.newline"):
        zoo.load(f"hf:{checkpoint_copy}")


def test_grid_pinpoints_that_differ_from_the_image_processors_are_refused(checkpoint_copy):
    path = checkpoint_copy / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "image_grid_pinpoints": [[64, 64]]}))
    with pytest.raises(ValueError, match="image_grid_pinpoints .* differ from its image processor"):
        zoo.load(f"hf:{checkpoint_copy}")


def test_a_processor_without_pinpoints_a_kept_cls_token_or_uneven_pinpoints_are_refused():
    from transformers import CLIPImageProcessor, LlavaNextImageProcessor

    from encoders.image.hf_vision_anyres import HFVisionAnyresEncoder, HFVisionAnyresEncoderConfig

    def encoder(processor, **fields):
        config = HFVisionAnyresEncoderConfig(model_config={"model_type": "clip_vision_model", **TINY_VIT},
                                             image_processor=json.loads(json.dumps(processor.to_dict())), **fields)
        return HFVisionAnyresEncoder(config)

    sizes = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
    with pytest.raises(ValueError, match="needs a LLaVA-NeXT image processor with image_grid_pinpoints"):
        encoder(CLIPImageProcessor(**sizes))
    with pytest.raises(ValueError, match="feature_select_strategy 'default'"):
        encoder(LlavaNextImageProcessor(**sizes, image_grid_pinpoints=PINPOINTS), feature_select_strategy="full")
    with pytest.raises(ValueError, match="multiple of the tower's 32-pixel image size"):
        encoder(LlavaNextImageProcessor(**sizes, image_grid_pinpoints=[[32, 48]]))
    assert encoder(LlavaNextImageProcessor(**sizes, image_grid_pinpoints=PINPOINTS)).hidden_size == 32 + 1
