"""``zoo.load("hf:DIR")`` of a T5ForConditionalGeneration checkpoint (the ``t5`` family: T5, MolT5): a text-only
encoder–decoder with no modality encoders, giving transformers' own logits, greedy and beam generations. A tiny
random T5 saved by transformers in the Hub layout, with a tokenizer built offline, stands in for a Hub repo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, T5Config, T5ForConditionalGeneration

import zoo
from encoders.text.tokenizers import load_tokenizer
from tasks.config import TaskConfig
from zoo.converters.families import convert_config
from zoo.converters.t5 import t5_key_map
from zoo.errors import WeightsError
from zoo.evaluation.evaluate import evaluate
from zoo.evaluation.runners import build_options, score_options
from zoo.models.multimodal_seq2seq_lm import MultimodalSeq2SeqLM
from zoo.processing import IGNORE_INDEX
from zoo.spec import SpecError, spec_from_dict

# vocab_size leaves room for tiny-bpe's 600 tokens, so nothing is resized; the wide initialisation makes greedy
# and beam outputs vary from token to token
TINY_T5 = {"vocab_size": 608, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
           "num_heads": 4, "relative_attention_num_buckets": 8, "relative_attention_max_distance": 32,
           "pad_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 0, "initializer_factor": 5.0}
PROMPTS = ["CC(=O)Oc1ccccc1C(=O)O", "The molecule is an alcohol with two carbons."]
ANSWERS = ["aspirin is a salicylate", "CCO"]
GREEDY = {"max_new_tokens": 8, "do_sample": False, "num_beams": 1}
BEAMS = {"max_new_tokens": 6, "do_sample": False, "num_beams": 3, "num_return_sequences": 3}
CHEBI20 = Path(__file__).parents[1] / "tasks" / "samples" / "chebi20-test-100.tsv"  # real ChEBI-20 test rows


pytestmark = pytest.mark.usefixtures("hub_offline")  # every file here is local


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> tuple[Path, T5ForConditionalGeneration]:
    """A tiny random T5ForConditionalGeneration saved like a Hub repo (config.json, model.safetensors, its
    tokenizer), and transformers' own model loaded back from it."""
    root = tmp_path_factory.mktemp("t5") / "checkpoint"
    torch.manual_seed(0)
    T5ForConditionalGeneration(AutoConfig.for_model("t5", **TINY_T5)).save_pretrained(root)
    load_tokenizer("bundled:tiny-bpe").save_pretrained(root)
    return root, T5ForConditionalGeneration.from_pretrained(root).eval()


@pytest.fixture(scope="module")
def loaded(tiny_t5) -> MultimodalSeq2SeqLM:
    return zoo.load(f"hf:{tiny_t5[0]}")


def reference_inputs(batch) -> dict[str, torch.Tensor]:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def test_the_checkpoint_is_a_text_only_seq2seq_model(tiny_t5, loaded):
    root, reference = tiny_t5
    assert isinstance(loaded, MultimodalSeq2SeqLM) and type(loaded.language_model) is T5ForConditionalGeneration
    assert loaded.spec.encoders == {} and loaded.spec.projectors == {} and not loaded.processor.placeholder_ids
    assert loaded.spec.backbone.config["model_config"]["d_ff"] == 64  # read from config.json, not a default
    assert len(loaded.processor.tokenizer) == 600  # no placeholder token was added
    ours, theirs = loaded.language_model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_logits_and_loss_match_transformers(tiny_t5, loaded):
    reference = tiny_t5[1]
    batch = loaded.processor(PROMPTS, targets=ANSWERS)
    tokenizer = loaded.processor.tokenizer
    encoded = tokenizer(PROMPTS[1], add_special_tokens=False)["input_ids"]
    assert batch["input_ids"][1][batch["attention_mask"][1].bool()].tolist() == [
        tokenizer.bos_token_id, *encoded, tokenizer.eos_token_id]  # the prompt whole, as the tokenizer splits it
    with torch.no_grad():
        ours = loaded(**batch)
        theirs = reference(**reference_inputs(batch), labels=batch["labels"])
    assert ours.logits.dtype == torch.float32 and ours.logits.shape[1] == batch["labels"].shape[1]
    torch.testing.assert_close(ours.logits, theirs.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.loss, theirs.loss, rtol=1e-4, atol=1e-4)


def test_answers_are_the_labels_transformers_fine_tunes_t5_on_and_are_scored_as_it_scores_them(tiny_t5, tmp_path):
    """transformers fine-tunes T5 on ``labels=tokenizer(text_target=answer)``, ``answer </s>``: with a tokenizer
    framing text as T5's does (no BOS, ``</s>`` last) those are the zoo's labels, and its summed answer loss and
    each option's log-likelihood are T5ForConditionalGeneration's own on the tokenizer's encoding."""
    root, reference = tiny_t5
    copy = Path(shutil.copytree(root, tmp_path / "ckpt"))
    t5_framed = load_tokenizer("bundled:tiny-bpe")
    t5_framed.bos_token, t5_framed.add_eos_token = None, True
    t5_framed.save_pretrained(copy)
    model = zoo.load(f"hf:{copy}")
    tokenizer = model.processor.tokenizer
    batch = model.processor(PROMPTS, targets=ANSWERS)
    log_likelihoods, counts = score_options(model, build_options(model, PROMPTS[:1], None, [ANSWERS]))
    for i, answer in enumerate(ANSWERS):
        labels = tokenizer(text_target=answer, return_tensors="pt")["input_ids"]
        assert labels[0].tolist() == [*tokenizer(answer, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        row = batch["labels"][i]
        assert row[row != IGNORE_INDEX].tolist() == labels[0].tolist()
        encoded = tokenizer(PROMPTS[i], return_tensors="pt")
        assert batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist() == encoded["input_ids"][0].tolist()
        with torch.no_grad():
            ours = model.answer_loss_sum(**model.processor(PROMPTS[i : i + 1], targets=[answer]))
            theirs = reference(**encoded, labels=labels).loss * labels.shape[1]
            option = reference(**tokenizer(PROMPTS[0], return_tensors="pt"), labels=labels).loss * labels.shape[1]
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(log_likelihoods[i], -option, rtol=1e-4, atol=1e-4)
        assert counts[i] == labels.shape[1]


def test_greedy_generation_matches_transformers(tiny_t5, loaded):
    reference = tiny_t5[1]
    batch = loaded.processor(PROMPTS)
    tokenizer = loaded.processor.tokenizer
    ours = loaded.generate(**batch, **GREEDY)
    theirs = reference.generate(**reference_inputs(batch), **GREEDY, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id)
    assert torch.equal(ours, theirs[:, 1:])  # without the decoder's start token
    assert len(set(ours.flatten().tolist())) > 2 and not torch.equal(ours[0], ours[1])  # not degenerate
    assert loaded.generate_text(PROMPTS, **GREEDY) == loaded.processor.batch_decode(theirs)


def test_beam_generation_matches_transformers(tiny_t5, loaded):
    reference = tiny_t5[1]
    batch = loaded.processor(PROMPTS)
    tokenizer = loaded.processor.tokenizer
    ours = loaded.generate(**batch, **BEAMS)
    theirs = reference.generate(**reference_inputs(batch), **BEAMS, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id)
    assert torch.equal(ours, theirs[:, 1:])
    texts = loaded.generate_text(PROMPTS, **BEAMS)
    decoded = loaded.processor.batch_decode(theirs)
    assert texts == [decoded[:3], decoded[3:]]


@pytest.mark.parametrize(("source", "target", "metric", "options", "key"), [
    ("SMILES", "description", "captioning", {}, "bleu4"),  # molecule captioning (MolT5 smiles2caption)
    ("description", "SMILES", "molecule_generation", {"profile": "molt5"}, "molt5_exact_match"),  # caption2smiles
])
def test_a_text_only_model_runs_chebi20_both_ways_with_the_row_text_as_prompt(loaded, source, target, metric,
                                                                                options, key):
    generation = {"max_new_tokens": 6, "do_sample": False, "num_beams": 2}
    task = TaskConfig(name=f"{source}->{target}", kind="generate", metric=metric, reader="tsv",
                      fields={"id": "CID", "item": source, "reference": target}, prompt_template=f"{{{source}}}",
                      generation=generation, metric_options=options)
    results = evaluate(loaded, task, CHEBI20, limit=3, batch_size=2, progress=False, report=False)
    assert results["num_failed"] == 0 and key in results["metrics"]
    rows = results["rows"]
    assert [r["prediction"] for r in rows] == loaded.generate_text([r["item"] for r in rows], **generation)


def test_the_text_only_model_saves_and_reloads_exactly(loaded, tmp_path):
    reloaded = zoo.load(loaded.save_pretrained(tmp_path / "saved"))
    assert reloaded.spec.encoders == {}
    batch = loaded.processor(PROMPTS, targets=ANSWERS)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, reloaded(**batch).logits)


def test_a_file_with_every_tied_copy_loads_and_a_differing_copy_is_refused(tiny_t5, tmp_path):
    """transformers 4 saved ``encoder/decoder.embed_tokens`` and ``lm_head`` beside ``shared`` (the Hub's
    MolT5 files): equal copies are dropped, a copy that differs is an error naming the tie."""
    root, reference = tiny_t5
    copy = Path(shutil.copytree(root, tmp_path / "ckpt"))
    state = load_file(str(copy / "model.safetensors"))
    shared = state["shared.weight"]
    tied = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
    save_file({**state, **{key: shared.clone() for key in tied}}, str(copy / "model.safetensors"))
    model = zoo.load(f"hf:{copy}")
    batch = model.processor(PROMPTS)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch, labels=batch["input_ids"]).logits,
                                   reference(**reference_inputs(batch), labels=batch["input_ids"]).logits,
                                   rtol=1e-4, atol=1e-4)
    save_file({**state, "lm_head.weight": shared + 1}, str(copy / "model.safetensors"))
    with pytest.raises(WeightsError, match="tied tensors more than once.*lm_head.weight"):
        zoo.load(f"hf:{copy}")


def test_the_key_map_names_every_key_and_rejects_strangers():
    shared = torch.ones(4, 2)
    state = {"shared.weight": shared, "encoder.embed_tokens.weight": shared.clone(),
             "encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(2, 2),
             "decoder.final_layer_norm.weight": torch.ones(2), "lm_head.weight": torch.zeros(4, 2)}
    assert t5_key_map(state) == {
        "shared.weight": "language_model.shared.weight", "encoder.embed_tokens.weight": None,
        "encoder.block.0.layer.0.SelfAttention.q.weight": "language_model.encoder.block.0.layer.0.SelfAttention.q.weight",
        "decoder.final_layer_norm.weight": "language_model.decoder.final_layer_norm.weight",
        "lm_head.weight": "language_model.lm_head.weight",
    }
    with pytest.raises(ValueError, match="1 key.*model.encoder.embed_positions.weight"):
        t5_key_map({**state, "model.encoder.embed_positions.weight": torch.zeros(1)})


def test_the_config_becomes_a_spec_with_defaults_written_out():
    # config.json of a T5 v1.0-style MolT5 base as transformers 4 wrote it (fields left at their defaults omitted)
    config = {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "d_ff": 3072, "d_model": 768,
              "num_heads": 12, "num_layers": 12, "n_positions": 512, "output_past": True, "vocab_size": 32128,
              "decoder_start_token_id": 0, "auto_map": {"AutoModel": "evil.Model"}}
    conversion = convert_config(config, "org/molt5", "a" * 40, "hf:org/molt5@main")
    assert (conversion.family, conversion.key_map, conversion.placeholder_ids) == ("t5", "t5", {})
    spec = conversion.spec
    assert spec["encoders"] == {} and spec["projectors"] == {}
    assert spec["tokenizer"] == {"type": "pretrained", "path": "org/molt5", "revision": "a" * 40}
    model_config = spec["backbone"]["config"]["model_config"]
    assert model_config == {"model_type": "t5", "vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072,
                            "num_layers": 12, "num_decoder_layers": 12, "num_heads": 12,
                            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
                            "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0,
                            "feed_forward_proj": "relu", "tie_word_embeddings": True, "pad_token_id": 0,
                            "eos_token_id": 1, "decoder_start_token_id": 0}
    assert spec_from_dict(spec).backbone.type == "hf-seq2seq-lm"


@pytest.mark.parametrize("saved_by", ["transformers 4", "transformers 5"])
def test_a_t5_v1_1_config_keeps_its_decoder_output_unscaled_in_either_spelling(saved_by):
    # a T5 v1.1 (Flan-T5) does not rescale its decoder output: transformers 4 wrote tie_word_embeddings false,
    # transformers 5 writes scale_decoder_outputs false beside tie_word_embeddings true
    spelling = ({"tie_word_embeddings": False} if saved_by == "transformers 4"
                else {"tie_word_embeddings": True, "scale_decoder_outputs": False})
    config = {"model_type": "t5", "feed_forward_proj": "gated-gelu", **spelling}
    model_config = convert_config(config, "org/flan", None, "hf:org/flan").spec["backbone"]["config"]["model_config"]
    assert model_config["tie_word_embeddings"] is False
    assert T5Config(**model_config).scale_decoder_outputs is False


def test_a_t5_without_its_lm_head_is_refused():
    with pytest.raises(SpecError, match="'T5EncoderModel'.*T5ForConditionalGeneration"):
        convert_config({"model_type": "t5", "architectures": ["T5EncoderModel"]}, "org/enc", None, "hf:org/enc")


def test_only_an_encoder_decoder_may_have_no_modality_encoders():
    text_only = {"type": "multimodal-lm", "encoders": {}, "projectors": {}, "tokenizer": {"type": "bundled", "path": "tiny-bpe"},
                 "backbone": {"type": "hf-seq2seq-lm", "config": {"model_config": {"model_type": "t5", **TINY_T5}}}}
    assert spec_from_dict(text_only).encoders == {}
    causal = {**text_only, "backbone": {"type": "hf-causal-lm", "config": {"model_config": {"model_type": "gpt2"}}}}
    with pytest.raises(SpecError, match="spec.encoders is empty but backbone 'hf-causal-lm' needs at least one"):
        spec_from_dict(causal)
    with pytest.raises(SpecError, match="every encoder needs a projector"):
        spec_from_dict({**text_only, "projectors": {"image": {"type": "linear"}}})
    with pytest.raises(SpecError, match="spec.encoders must be a non-empty mapping"):
        spec_from_dict({**text_only, "encoders": None})
