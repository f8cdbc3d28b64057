"""``zoo.load("hf:DIR")`` of a BLIP-2 checkpoint: a tiny random ``Blip2ForConditionalGeneration`` (OPT language
model) saved with ``save_pretrained`` stands in for a Hub repo, and the zoo model built by the ``blip-2``
family gives transformers' logits and greedy generations. Nothing is downloaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from tests.helpers import image
from zoo.converters.blip2 import blip2_key_map
from zoo.converters.families import convert_config
from zoo.spec import SpecError

PROMPTS = ["<image>Question: what is shown here? Answer:", "<image>a photo of"]
NUM_QUERIES = 4

# config.json of Salesforce/blip2-opt-2.7b as transformers 4.47 wrote it (defaults left out).
BLIP2_OPT_27B_CONFIG = {
    "architectures": ["Blip2ForConditionalGeneration"], "image_text_hidden_size": 256, "image_token_index": 50265,
    "initializer_factor": 1.0, "initializer_range": 0.02, "model_type": "blip-2", "num_query_tokens": 32,
    "qformer_config": {"classifier_dropout": None, "model_type": "blip_2_qformer"},
    "text_config": {"_name_or_path": "facebook/opt-2.7b", "activation_dropout": 0.0,
                    "architectures": ["OPTForCausalLM"], "eos_token_id": 50118, "ffn_dim": 10240, "hidden_size": 2560,
                    "model_type": "opt", "num_attention_heads": 32, "num_hidden_layers": 32, "prefix": "</s>",
                    "torch_dtype": "float16", "vocab_size": 50304, "word_embed_proj_dim": 2560},
    "torch_dtype": "float32", "transformers_version": "4.47.0.dev0", "use_decoder_only_language_model": True,
    "vision_config": {"dropout": 0.0, "initializer_factor": 1.0, "model_type": "blip_2_vision_model",
                      "num_channels": 3, "projection_dim": 512},
}


@pytest.fixture(scope="module")
def tiny_blip2(tmp_path_factory):
    """A tiny Blip2ForConditionalGeneration saved like Salesforce/blip2-opt-2.7b: sharded safetensors, its
    tokenizer (with ``<image>``, adding BOS as OPT's does), its BLIP image processor. Every weight is perturbed away from its
    initialisation (zero queries, unit LayerNorms, a 1e-10 vision init), so a weight loaded into the wrong place
    or left out changes the logits."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        OPTConfig,
    )

    from encoders.text.tokenizers import load_tokenizer

    root = tmp_path_factory.mktemp("blip2")
    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.add_bos_token = True  # as OPT's tokenizer does: Blip2Processor's text then starts with BOS
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, image_size=32, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                          intermediate_size=64, cross_attention_frequency=2).to_dict(),
        text_config=OPTConfig(vocab_size=640, hidden_size=48, num_hidden_layers=2, ffn_dim=96, num_attention_heads=4,
                              word_embed_proj_dim=48, max_position_embeddings=128, **ids).to_dict(),
        num_query_tokens=NUM_QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(5)
    model = Blip2ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    model.save_pretrained(root, max_shard_size="100KB")
    tokenizer.save_pretrained(root)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root)
    return root, model, tokenizer


@pytest.fixture
def checkpoint_copy(tiny_blip2, tmp_path) -> Path:
    root, _, _ = tiny_blip2
    return Path(shutil.copytree(root, tmp_path / "ckpt"))


def reference_inputs(batch) -> dict:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "pixel_values": batch["modality_inputs"]["image"]["pixel_values"]}


def test_a_local_checkpoint_gives_transformers_logits_and_generations(tiny_blip2):
    root, reference, _ = tiny_blip2
    assert len(list(root.glob("model-*.safetensors"))) > 1  # the key map is applied shard by shard
    model = zoo.load(f"hf:{root}")
    processor = model.processor
    assert processor.placeholder_ids["image"] == reference.config.image_token_index
    for prompt, picture in zip(PROMPTS, [image(0), image(1)], strict=True):
        batch = processor([prompt], {"image": [[picture]]}, padding_side="left")
        assert int((batch["input_ids"] == reference.config.image_token_index).sum()) == NUM_QUERIES
        inputs = reference_inputs(batch)
        with torch.no_grad():
            ours, theirs = model(**batch).logits, reference(**inputs).logits
            torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
            generated = model.generate(**batch, max_new_tokens=6, do_sample=False)
            expected = reference.generate(**inputs, max_new_tokens=6, do_sample=False,
                                          pad_token_id=processor.tokenizer.pad_token_id)
        assert generated.tolist() == expected[:, inputs["input_ids"].shape[1]:].tolist()


def test_a_left_padded_batch_generates_as_transformers_does(tiny_blip2):
    root, reference, _ = tiny_blip2
    model = zoo.load(f"hf:{root}")
    batch = model.processor(PROMPTS, {"image": [[image(2)], [image(3)]]}, padding_side="left")
    assert bool((batch["attention_mask"] == 0).any())  # the prompts differ in length: one row is padded
    inputs = reference_inputs(batch)
    with torch.no_grad():
        ours, theirs = model(**batch).logits, reference(**inputs).logits
        real = batch["attention_mask"].bool()
        torch.testing.assert_close(ours[real], theirs[real], atol=1e-4, rtol=1e-4)
        generated = model.generate(**batch, max_new_tokens=5, do_sample=False)
        expected = reference.generate(**inputs, max_new_tokens=5, do_sample=False,
                                      pad_token_id=model.processor.tokenizer.pad_token_id)
    assert generated.tolist() == expected[:, inputs["input_ids"].shape[1]:].tolist()


def test_the_zoo_processor_lays_out_a_prompt_as_transformers_blip2_processor_does(tiny_blip2):
    """Blip2Processor puts the query placeholders before the text's BOS; the blip-2 spec's
    ``bos_after_leading_placeholders`` makes the zoo processor give the same ids, mask and pixels, hence the same
    logits. A prompt that opens with text keeps BOS first."""
    from transformers import Blip2Processor, BlipImageProcessor

    root, reference, tokenizer = tiny_blip2
    model = zoo.load(f"hf:{root}")
    assert model.spec.bos_after_leading_placeholders is True
    text = "Question: what is it? Answer:"
    theirs = Blip2Processor(BlipImageProcessor.from_pretrained(root), tokenizer, num_query_tokens=NUM_QUERIES)
    inputs = theirs(images=[image(4)], text=[text], return_tensors="pt")
    assert inputs["input_ids"][0, :NUM_QUERIES + 1].tolist() == (
        [reference.config.image_token_index] * NUM_QUERIES + [tokenizer.bos_token_id])
    ours = model.processor([f"<image>{text}"], {"image": [[image(4)]]})
    torch.testing.assert_close(ours["input_ids"], inputs["input_ids"])
    torch.testing.assert_close(ours["attention_mask"], inputs["attention_mask"])
    torch.testing.assert_close(ours["modality_inputs"]["image"]["pixel_values"], inputs["pixel_values"])
    with torch.no_grad():
        torch.testing.assert_close(model(**ours).logits, reference(**inputs).logits, atol=1e-4, rtol=1e-4)
    opens_with_text = model.processor([f"{text}<image>"], {"image": [[image(4)]]})["input_ids"][0]
    assert opens_with_text[0] == tokenizer.bos_token_id and opens_with_text[-1] == reference.config.image_token_index


def test_bos_stays_first_unless_the_spec_asks_otherwise(tiny_blip2):
    from zoo.spec import spec_from_dict, spec_to_dict

    root, _, tokenizer = tiny_blip2
    model = zoo.load(f"hf:{root}")
    default = spec_from_dict({**spec_to_dict(model.spec), "bos_after_leading_placeholders": False})
    assert default.bos_after_leading_placeholders is False
    processor = model.processor
    processor.bos_after_leading_placeholders = False
    try:
        ids = processor(["<image>a photo of"], {"image": [[image(4)]]})["input_ids"][0]
    finally:
        processor.bos_after_leading_placeholders = True
    assert ids[0] == tokenizer.bos_token_id and ids[1] == processor.placeholder_ids["image"]
    with pytest.raises(SpecError, match="bos_after_leading_placeholders must be true or false"):
        spec_from_dict({**spec_to_dict(model.spec), "bos_after_leading_placeholders": "yes"})


def test_the_blip2_opt_27b_config_resolves_to_the_cards_spec():
    card = zoo.card("blip2-opt-2.7b")
    revision = card.weights[0].revision
    conversion = convert_config(BLIP2_OPT_27B_CONFIG, "Salesforce/blip2-opt-2.7b", revision,
                                "hf:Salesforce/blip2-opt-2.7b")
    assert conversion.spec == card.spec
    assert (conversion.family, conversion.key_map, conversion.placeholder_ids) == ("blip-2", "blip2", {"image": 50265})


def test_an_unknown_or_missing_tensor_fails_the_load(checkpoint_copy):
    shard = sorted(checkpoint_copy.glob("model-*.safetensors"))[-1]
    state = load_file(str(shard))
    # an InstructBLIP Q-Former's text embeddings: not part of a BLIP-2 checkpoint
    save_file({**state, "qformer.embeddings.word_embeddings.weight": torch.zeros(2, 2)}, str(shard))
    with pytest.raises(ValueError, match="1 key.*fit no BLIP-2 rule.*qformer.embeddings.word_embeddings.weight"):
        zoo.load(f"hf:{checkpoint_copy}")
    save_file(dict(list(state.items())[1:]), str(shard))
    with pytest.raises(ValueError, match="missing key"):
        zoo.load(f"hf:{checkpoint_copy}")


def test_the_key_map_sends_each_qformer_block_to_its_zoo_name():
    keys = {
        "query_tokens": "projectors.image.qformer.query_tokens",
        "qformer.layernorm.bias": "projectors.image.qformer.norm.bias",
        "qformer.encoder.layer.3.attention.attention.value.weight":
            "projectors.image.qformer.layers.3.self_attention.value.weight",
        "qformer.encoder.layer.2.crossattention.output.LayerNorm.weight":
            "projectors.image.qformer.layers.2.cross_attention.norm.weight",
        "qformer.encoder.layer.0.intermediate_query.dense.bias": "projectors.image.qformer.layers.0.intermediate.0.bias",
        "qformer.encoder.layer.0.output_query.dense.weight": "projectors.image.qformer.layers.0.output.weight",
        "qformer.encoder.layer.0.output_query.LayerNorm.bias": "projectors.image.qformer.layers.0.norm.bias",
        "vision_model.post_layernorm.weight": "encoders.image.model.post_layernorm.weight",
        "language_projection.weight": "projectors.image.language_projection.weight",
        "language_model.lm_head.weight": "language_model.lm_head.weight",
    }
    assert blip2_key_map(dict.fromkeys(keys)) == keys
    with pytest.raises(ValueError, match="qformer.encoder.layer.0.output.dense.weight"):  # text feed-forward
        blip2_key_map(dict.fromkeys([*keys, "qformer.encoder.layer.0.output.dense.weight"]))


@pytest.mark.parametrize(("change", "message"), [
    ({"text_config": {"model_type": "llama"}}, "'llama' language model is not supported.*opt, t5"),
    ({"qformer_config": {"use_qformer_text_input": True}}, "use_qformer_text_input True is not supported"),
    ({"qformer_config": {"hidden_act": "relu"}}, "hidden_act 'relu' is not supported"),
    ({"image_token_index": None}, "image_token_index must be an int.*load a revision that has it"),
])
def test_configs_the_zoo_model_would_not_match_are_refused(change, message):
    config = {**BLIP2_OPT_27B_CONFIG, **change}
    with pytest.raises(SpecError, match=message):
        convert_config(config, "some-org/blip2", None, "hf:some-org/blip2")


# ---- BLIP-2 with a Flan-T5 language model: a MultimodalSeq2SeqLM ----------------------------------------------


@pytest.fixture(scope="module")
def tiny_blip2_t5(tmp_path_factory):
    """A tiny Blip2ForConditionalGeneration with a gated-GELU T5 (Flan-T5's kind, untied LM head), saved like
    Salesforce/blip2-flan-t5-xl, every weight perturbed as above."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        T5Config,
    )

    from encoders.text.tokenizers import load_tokenizer

    root = tmp_path_factory.mktemp("blip2_t5")
    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    config = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, image_size=32, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=64, cross_attention_frequency=1).to_dict(),
        text_config=T5Config(vocab_size=640, d_model=48, d_kv=12, d_ff=96, num_layers=2, num_heads=4,
                             relative_attention_num_buckets=8, relative_attention_max_distance=32,
                             feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             decoder_start_token_id=tokenizer.pad_token_id).to_dict(),
        num_query_tokens=NUM_QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(6)
    model = Blip2ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root)
    return root, model


def test_a_flan_t5_checkpoint_gives_transformers_logits_and_generations(tiny_blip2_t5):
    from zoo.models.multimodal_seq2seq_lm import MultimodalSeq2SeqLM

    root, reference = tiny_blip2_t5
    model = zoo.load(f"hf:{root}")
    assert isinstance(model, MultimodalSeq2SeqLM)
    assert model.spec.backbone.config["model_config"]["feed_forward_proj"] == "gated-gelu"
    batch = model.processor(PROMPTS, {"image": [[image(5)], [image(6)]]})
    inputs = reference_inputs(batch)
    decoder_input_ids = torch.tensor([[0, 7, 9, 11], [0, 12, 5, 3]])
    with torch.no_grad():
        ours = model(**batch, decoder_input_ids=decoder_input_ids).logits
        theirs = reference(**inputs, decoder_input_ids=decoder_input_ids).logits
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
        generated = model.generate(**batch, max_new_tokens=6, do_sample=False)
        expected = reference.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert generated.tolist() == expected[:, 1:].tolist()  # without the decoder's start token


def test_a_t5_copy_of_the_shared_embeddings_is_dropped_only_when_equal(tiny_blip2_t5, tmp_path):
    root, _ = tiny_blip2_t5
    copy = Path(shutil.copytree(root, tmp_path / "ckpt"))
    path = copy / "model.safetensors"
    state = load_file(str(path))
    shared = state["language_model.shared.weight"]
    save_file({**state, "language_model.encoder.embed_tokens.weight": shared.clone()}, str(path))
    zoo.load(f"hf:{copy}")  # a transformers 4 save holds the tied copy too
    save_file({**state, "language_model.encoder.embed_tokens.weight": shared + 1}, str(path))
    with pytest.raises(ValueError, match="tied tensors more than once"):
        zoo.load(f"hf:{copy}")


@pytest.mark.parametrize("spelling", [{"tie_word_embeddings": False},  # transformers 4 (the Hub's Flan-T5 configs)
                                      {"tie_word_embeddings": True, "scale_decoder_outputs": False}])  # transformers 5
def test_a_flan_t5_decoder_output_is_never_rescaled_whichever_transformers_saved_it(spelling):
    config = {**BLIP2_OPT_27B_CONFIG, "text_config": {"model_type": "t5", "feed_forward_proj": "gated-gelu", **spelling}}
    spec = convert_config(config, "some-org/blip2-t5", None, "hf:some-org/blip2-t5").spec
    assert spec["backbone"]["type"] == "hf-seq2seq-lm"
    assert spec["backbone"]["config"]["model_config"]["tie_word_embeddings"] is False


def test_the_qformer_options_change_only_the_layout_they_name():
    from projectors.qformer import QFormerConfig, QFormerProjector

    small = {"num_queries": 3, "num_layers": 2, "num_heads": 2, "hidden_size": 8, "intermediate_size": 16}
    torch.manual_seed(0)
    default = QFormerProjector(QFormerConfig(**small), in_dim=6, out_dim=5).eval()
    assert default.qformer.query_tokens.shape == (3, 8) and "input_norm.weight" in default.state_dict()
    torch.manual_seed(0)
    hf_layout = QFormerProjector(QFormerConfig(**small, input_norm=False, batched_queries=True), 6, 5).eval()
    assert hf_layout.qformer.query_tokens.shape == (1, 3, 8)
    assert {k for k in default.state_dict() if not k.startswith("input_norm.")} == set(hf_layout.state_dict())
    tokens, mask = torch.randn(2, 4, 6), torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        normed = default.input_norm(tokens)  # a fresh LayerNorm: the same values the other one reads unnormalised
        torch.testing.assert_close(hf_layout(normed, mask)[0], default(tokens, mask)[0])


def test_the_vision_tower_alone_is_not_read_from_a_whole_blip2_checkpoint(tiny_blip2):
    from encoders.image.hf_vision import HFVisionEncoder, HFVisionEncoderConfig

    root, reference, _ = tiny_blip2
    config = HFVisionEncoderConfig(pretrained=str(root), vision_feature_layer=-1, feature_select_strategy="full",
                                   post_layernorm=True)
    with pytest.raises(ValueError, match="Blip2VisionModel only inside a larger model"):
        HFVisionEncoder(config, load_pretrained=True)
    tower = HFVisionEncoder(config, load_pretrained=False)
    tower.model.load_state_dict(reference.vision_model.state_dict())
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # the tokens transformers' Q-Former reads: last_hidden_state, CLS kept
        torch.testing.assert_close(tower(pixels).tokens, reference.vision_model(pixel_values=pixels).last_hidden_state)
