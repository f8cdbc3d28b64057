"""``zoo.load("hf:DIR")`` of an InstructBLIP checkpoint: a tiny random ``InstructBlipForConditionalGeneration``
(Llama language model) saved with ``save_pretrained`` beside its ``InstructBlipProcessor`` (LM tokenizer, BERT
Q-Former tokenizer under ``qformer_tokenizer/``, BLIP image processor) stands in for a Hub repo. Given transformers'
own processor inputs, the zoo model built by the ``instructblip`` family gives transformers' logits and greedy
generations. Nothing is downloaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from tests.helpers import image
from zoo.converters.families import convert_config
from zoo.converters.instructblip import instructblip_key_map
from zoo.spec import SpecError

NUM_QUERIES = 4
INSTRUCTIONS = ["What is unusual about this image?", "Describe the picture in detail."]


@pytest.fixture(scope="module")
def tiny_instructblip(tmp_path_factory):
    """A tiny InstructBlipForConditionalGeneration and its InstructBlipProcessor, saved as the Hub repos are.
    Every weight is perturbed away from its initialisation, so a weight loaded into the wrong place (the text
    feed-forward swapped with the query one, say) or left out changes the logits."""
    from transformers import (
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
        InstructBlipQFormerConfig,
        InstructBlipVisionConfig,
        LlamaConfig,
    )

    from encoders.text.tokenizers import load_tokenizer

    root = tmp_path_factory.mktemp("instructblip")
    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.add_bos_token = True  # as Vicuna's (Llama's) tokenizer does
    qformer_tokenizer = load_tokenizer("bundled:bert-base-uncased")
    config = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                               num_attention_heads=2, image_size=32, patch_size=8).to_dict(),
        qformer_config=InstructBlipQFormerConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                                 intermediate_size=64, cross_attention_frequency=2,
                                                 vocab_size=len(qformer_tokenizer), max_position_embeddings=64,
                                                 encoder_hidden_size=32).to_dict(),
        text_config=LlamaConfig(vocab_size=640, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id).to_dict(),
        num_query_tokens=NUM_QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(7)
    model = InstructBlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    model.save_pretrained(root)
    processor = InstructBlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer,
                                      qformer_tokenizer, num_query_tokens=NUM_QUERIES)
    processor.save_pretrained(root)
    assert (root / "qformer_tokenizer").is_dir()
    return root, model, InstructBlipProcessor.from_pretrained(root)


def test_a_local_checkpoint_gives_transformers_logits_and_generations(tiny_instructblip):
    root, reference, theirs = tiny_instructblip
    model = zoo.load(f"hf:{root}")
    for instruction, picture in zip(INSTRUCTIONS, [image(0), image(1)], strict=True):
        inputs = theirs(images=[picture], text=[instruction], return_tensors="pt")
        batch = model.processor([f"<image>{instruction}"], {"image": [[picture]]}, padding_side="left")
        ours = batch["modality_inputs"]["image"]
        torch.testing.assert_close(batch["input_ids"], inputs["input_ids"])  # queries, BOS, text
        torch.testing.assert_close(ours["text_ids"], inputs["qformer_input_ids"])  # the instruction, once
        torch.testing.assert_close(ours["pixel_values"], inputs["pixel_values"])
        with torch.no_grad():
            logits, expected_logits = model(**batch).logits, reference(**inputs).logits
            generated = model.generate(**batch, max_new_tokens=6, do_sample=False)
            expected = reference.generate(**inputs, max_new_tokens=6, do_sample=False,
                                          pad_token_id=theirs.tokenizer.pad_token_id)
        torch.testing.assert_close(logits, expected_logits, atol=1e-4, rtol=1e-4)
        assert generated.tolist() == expected[:, inputs["input_ids"].shape[1]:].tolist()


def test_the_instruction_changes_what_the_queries_carry(tiny_instructblip):
    """The Q-Former reads the prompt: the same image under another instruction gives other image features."""
    root, _, _ = tiny_instructblip
    model = zoo.load(f"hf:{root}")
    features = []
    for instruction in INSTRUCTIONS:
        inputs = model.processor([f"<image>{instruction}"], {"image": [[image(2)]]})["modality_inputs"]["image"]
        with torch.no_grad():
            features.append(model.encode_modality("image", inputs)[0])
    assert float((features[0] - features[1]).abs().max()) > 0.1


def test_the_key_map_sends_the_qformer_text_parts_to_their_zoo_names():
    keys = {
        "qformer.embeddings.layernorm.weight": "projectors.image.qformer.norm.weight",
        "qformer.embeddings.word_embeddings.weight": "projectors.image.qformer.text_embeddings.weight",
        "qformer.embeddings.position_embeddings.weight": "projectors.image.qformer.text_positions.weight",
        "qformer.encoder.layer.2.intermediate.dense.bias": "projectors.image.qformer.layers.2.text_intermediate.0.bias",
        "qformer.encoder.layer.2.output.dense.weight": "projectors.image.qformer.layers.2.text_output.weight",
        "qformer.encoder.layer.2.output.LayerNorm.bias": "projectors.image.qformer.layers.2.text_norm.bias",
        "qformer.encoder.layer.2.output_query.dense.weight": "projectors.image.qformer.layers.2.output.weight",
        "language_model.lm_head.weight": "language_model.lm_head.weight",
    }
    assert instructblip_key_map(dict.fromkeys(keys)) == keys


def test_a_padded_batch_of_instructions_matches_each_prompt_alone(tiny_instructblip):
    root, _, _ = tiny_instructblip
    model = zoo.load(f"hf:{root}")
    prompts, pictures = [f"<image>{text}" for text in INSTRUCTIONS], [[image(3)], [image(4)]]
    batch = model.processor(prompts, {"image": pictures}, padding_side="left")
    assert not bool(batch["modality_inputs"]["image"]["text_mask"].all())  # one instruction is padded
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=4, do_sample=False)
        for i, (prompt, picture) in enumerate(zip(prompts, pictures, strict=True)):
            alone = model.generate(**model.processor([prompt], {"image": [picture]}), max_new_tokens=4,
                                   do_sample=False)
            assert together[i].tolist() == alone[0].tolist()


def test_a_saved_model_keeps_its_qformer_tokenizer(tiny_instructblip, tmp_path):
    root, _, _ = tiny_instructblip
    model = zoo.load(f"hf:{root}")
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "projector_tokenizers" / "image").is_dir()
    again = zoo.load(str(tmp_path / "saved"))
    batch = model.processor([f"<image>{INSTRUCTIONS[0]}"], {"image": [[image(5)]]})
    torch.testing.assert_close(again.processor([f"<image>{INSTRUCTIONS[0]}"], {"image": [[image(5)]]})["modality_inputs"]
                               ["image"]["text_ids"], batch["modality_inputs"]["image"]["text_ids"])
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, model(**batch).logits)


def test_an_unknown_tensor_fails_the_load(tiny_instructblip, tmp_path):
    root, _, _ = tiny_instructblip
    copy = Path(shutil.copytree(root, tmp_path / "ckpt"))
    path = copy / "model.safetensors"
    state = load_file(str(path))
    save_file({**state, "qformer.encoder.layer.0.output_text.dense.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ValueError, match="not an InstructBlipForConditionalGeneration.*output_text.dense.weight"):
        zoo.load(f"hf:{copy}")
    save_file({k: v for k, v in state.items() if k != "qformer.embeddings.word_embeddings.weight"}, str(path))
    with pytest.raises(ValueError, match="missing key"):
        zoo.load(f"hf:{copy}")


def test_a_flan_t5_instructblip_is_refused_by_name(tiny_instructblip):
    root, reference, _ = tiny_instructblip
    config = {**reference.config.to_dict(), "text_config": {"model_type": "t5"}}
    with pytest.raises(SpecError, match="'t5' language model is not supported.*Vicuna/Llama"):
        convert_config(config, "some-org/instructblip-flan-t5", None, "hf:some-org/instructblip-flan-t5")
    spec = convert_config(reference.config.to_dict(), "org/repo", "a" * 40, "hf:org/repo").spec
    assert spec["projector_tokenizers"] == {"image": {"path": "org/repo", "revision": "a" * 40,
                                                      "subfolder": "qformer_tokenizer"}}
