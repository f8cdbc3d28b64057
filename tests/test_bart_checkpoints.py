"""``zoo.load("hf:DIR")`` of a BartForConditionalGeneration checkpoint (the ``bart`` family): a text-only
encoder–decoder giving transformers' own logits, greedy and beam generations, with the generation defaults the
checkpoint carries (``generation_config.json``, or an old config.json's settings) applied as transformers applies
them and overridden by the caller's arguments. A tiny random BART saved by transformers in the Hub layout, with
the bundled tiny BPE tokenizer framing text as BART's does (``<s> text </s>``), stands in for a Hub repo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, BartConfig, BartForConditionalGeneration, BartModel, GenerationConfig
from typer.testing import CliRunner

import zoo
from encoders.text.tokenizers import load_tokenizer
from zoo.cli import app
from zoo.converters.bart import bart_key_map
from zoo.converters.families import convert_config
from zoo.errors import WeightsError
from zoo.evaluation.runners import build_options, score_options
from zoo.loading import hf_checkpoint_conversion
from zoo.models.multimodal_seq2seq_lm import MultimodalSeq2SeqLM
from zoo.processing import IGNORE_INDEX
from zoo.spec import SpecError, spec_from_dict, spec_to_dict

# vocab_size leaves room for tiny-bpe's 600 tokens (pad 0, <s> 1, </s> 2), so nothing is resized; BART starts
# decoding from </s> and forces </s> at the last step. scale_embedding (mBART-style sqrt(d) input scaling, off in
# facebook/bart-*) is on so that the zoo's embedding of the prompt is checked to scale as BART's encoder does; the
# wide initialisation makes greedy and beam outputs vary from token to token
TINY_BART = {"vocab_size": 608, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
             "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 64,
             "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 2,
             "forced_eos_token_id": 2, "init_std": 0.2, "scale_embedding": True}
PROMPTS = ["CC(=O)Oc1ccccc1C(=O)O", "The molecule is an alcohol with two carbons."]
ANSWERS = ["aspirin is a salicylate", "CCO"]
GREEDY = {"max_new_tokens": 8, "do_sample": False, "num_beams": 1}
# what BART summarisation checkpoints set: <s> forced first, beams, n-gram blocking, a length penalty
BART_STYLE = {"num_beams": 3, "forced_bos_token_id": 1, "no_repeat_ngram_size": 2, "length_penalty": 2.0,
              "early_stopping": True, "max_length": 12, "min_length": 4}
BEAMS = {**BART_STYLE, "num_return_sequences": 3}


pytestmark = pytest.mark.usefixtures("hub_offline")  # every file here is local


@pytest.fixture(scope="module")
def tiny_bart(tmp_path_factory) -> tuple[Path, BartForConditionalGeneration]:
    """A tiny random BartForConditionalGeneration saved like a Hub repo (config.json, generation_config.json,
    model.safetensors, its tokenizer), its ``final_logits_bias`` made non-zero so that a load that skipped it
    shows, its tokenizer framing every text ``<s> text </s>`` as BART's does, and transformers' own model loaded
    back from it."""
    root = tmp_path_factory.mktemp("bart") / "checkpoint"
    torch.manual_seed(0)
    model = BartForConditionalGeneration(AutoConfig.for_model("bart", **TINY_BART))
    with torch.no_grad():
        model.final_logits_bias.normal_(0.0, 1.0)
    model.save_pretrained(root)
    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.add_bos_token, tokenizer.add_eos_token = True, True
    tokenizer.save_pretrained(root)
    return root, BartForConditionalGeneration.from_pretrained(root).eval()


@pytest.fixture(scope="module")
def loaded(tiny_bart) -> MultimodalSeq2SeqLM:
    return zoo.load(f"hf:{tiny_bart[0]}")


def reference_inputs(batch) -> dict[str, torch.Tensor]:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def with_files(root: Path, destination: Path, generation: dict[str, Any] | None = None,
               config: dict[str, Any] | None = None) -> Path:
    """A copy of the checkpoint whose generation_config.json is ``generation`` (None: no such file) and whose
    config.json has ``config``'s fields added."""
    copy = Path(shutil.copytree(root, destination))
    (copy / "generation_config.json").unlink()
    if generation is not None:
        (copy / "generation_config.json").write_text(json.dumps(generation))
    if config:
        (copy / "config.json").write_text(json.dumps({**json.loads((copy / "config.json").read_text()), **config}))
    return copy


def test_the_checkpoint_is_a_text_only_seq2seq_model(tiny_bart, loaded):
    root, reference = tiny_bart
    assert isinstance(loaded, MultimodalSeq2SeqLM) and type(loaded.language_model) is BartForConditionalGeneration
    assert loaded.spec.encoders == {} and loaded.spec.projectors == {} and not loaded.processor.placeholder_ids
    assert loaded.spec.backbone.config["model_config"]["encoder_ffn_dim"] == 64  # read from config.json
    assert len(loaded.processor.tokenizer) == 600  # no placeholder token was added
    ours, theirs = loaded.language_model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert bool(ours["final_logits_bias"].abs().sum() > 0)


def test_logits_and_loss_match_transformers(tiny_bart, loaded):
    reference = tiny_bart[1]
    batch = loaded.processor(PROMPTS, targets=ANSWERS)
    tokenizer = loaded.processor.tokenizer
    encoded = tokenizer(PROMPTS[1], add_special_tokens=False)["input_ids"]
    assert batch["input_ids"][1][batch["attention_mask"][1].bool()].tolist() == [
        tokenizer.bos_token_id, *encoded, tokenizer.eos_token_id] == tokenizer(PROMPTS[1])["input_ids"]  # <s> prompt </s>
    with torch.no_grad():
        ours = loaded(**batch)
        theirs = reference(**reference_inputs(batch), labels=batch["labels"])
    assert ours.logits.dtype == torch.float32 and ours.logits.shape[1] == batch["labels"].shape[1]
    torch.testing.assert_close(ours.logits, theirs.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.loss, theirs.loss, rtol=1e-4, atol=1e-4)


def test_answers_are_the_labels_transformers_fine_tunes_bart_on_and_are_scored_as_it_scores_them(tiny_bart, loaded):
    """transformers fine-tunes BART on ``labels=tokenizer(text_target=answer)``, ``<s> answer </s>``: those are the
    zoo's labels, and its summed answer loss (training) and each option's log-likelihood (multiple-choice
    scoring) are BartForConditionalGeneration's own on the tokenizer's encoding of prompt and answer."""
    reference = tiny_bart[1]
    tokenizer = loaded.processor.tokenizer
    batch = loaded.processor(PROMPTS, targets=ANSWERS)
    log_likelihoods, counts = score_options(loaded, build_options(loaded, PROMPTS[:1], None, [ANSWERS]))
    for i, answer in enumerate(ANSWERS):
        labels = tokenizer(text_target=answer, return_tensors="pt")["input_ids"]
        assert labels[0, 0] == tokenizer.bos_token_id and labels[0, -1] == tokenizer.eos_token_id
        row = batch["labels"][i]
        assert row[row != IGNORE_INDEX].tolist() == labels[0].tolist()
        with torch.no_grad():
            ours = loaded.answer_loss_sum(**loaded.processor(PROMPTS[i : i + 1], targets=[answer]))
            theirs = reference(**tokenizer(PROMPTS[i], return_tensors="pt"), labels=labels).loss * labels.shape[1]
            option = reference(**tokenizer(PROMPTS[0], return_tensors="pt"), labels=labels).loss * labels.shape[1]
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(log_likelihoods[i], -option, rtol=1e-4, atol=1e-4)
        assert counts[i] == labels.shape[1]


def test_greedy_generation_matches_transformers(tiny_bart, loaded):
    reference = tiny_bart[1]
    batch = loaded.processor(PROMPTS)
    ours = loaded.generate(**batch, **GREEDY)
    theirs = reference.generate(**reference_inputs(batch), **GREEDY)
    assert theirs[:, 0].tolist() == [TINY_BART["decoder_start_token_id"]] * len(PROMPTS)  # decoding starts at </s>
    assert torch.equal(ours, theirs[:, 1:])
    assert len(set(ours.flatten().tolist())) > 2 and not torch.equal(ours[0], ours[1])  # not degenerate
    assert loaded.generate_text(PROMPTS, **GREEDY) == loaded.processor.batch_decode(theirs)


def test_beam_generation_with_bart_settings_matches_transformers(tiny_bart, loaded):
    reference = tiny_bart[1]
    batch = loaded.processor(PROMPTS)
    ours = loaded.generate(**batch, **BEAMS)
    theirs = reference.generate(**reference_inputs(batch), **BEAMS)
    assert torch.equal(ours, theirs[:, 1:])
    assert ours[:, 0].tolist() == [BART_STYLE["forced_bos_token_id"]] * len(ours)  # <s> forced first
    texts = loaded.generate_text(PROMPTS, **BEAMS)
    decoded = loaded.processor.batch_decode(theirs)
    assert texts == [decoded[:3], decoded[3:]]


def test_generation_config_json_sets_the_defaults_and_arguments_override_them(tiny_bart, loaded, tmp_path):
    root = tiny_bart[0]
    # as transformers writes it from a BART config: the ids beside the settings, and its own bookkeeping
    file = {**BART_STYLE, "bos_token_id": 1, "decoder_start_token_id": 2, "eos_token_id": 2, "forced_eos_token_id": 2,
            "pad_token_id": 0, "transformers_version": "4.40.0", "_from_model_config": True}
    copy = with_files(root, tmp_path / "ckpt", generation=file)
    model = zoo.load(f"hf:{copy}")
    assert model.spec.generation == {k: v for k, v in file.items() if k not in ("transformers_version",
                                                                               "_from_model_config")}
    reference = BartForConditionalGeneration.from_pretrained(copy).eval()
    batch = model.processor(PROMPTS)
    defaults = model.generate(**batch)
    assert torch.equal(defaults, reference.generate(**reference_inputs(batch))[:, 1:])
    assert defaults[:, 0].tolist() == [1, 1] and defaults.shape[1] <= BART_STYLE["max_length"] - 1
    plain = {"num_beams": 1, "forced_bos_token_id": None, "no_repeat_ngram_size": 0, "max_new_tokens": 8}
    overridden = model.generate(**batch, **plain)
    assert torch.equal(overridden, reference.generate(**reference_inputs(batch), **plain)[:, 1:])
    assert overridden.tolist() != defaults.tolist()
    # a caller's own generation_config replaces the checkpoint's defaults whole
    assert torch.equal(model.generate(**batch, generation_config=GenerationConfig(**GREEDY)),
                       loaded.generate(**batch, **GREEDY))
    # the defaults are spec data: `zoo info` shows them and a saved model keeps them
    info = CliRunner().invoke(app, ["info", f"hf:{copy}"])
    assert info.exit_code == 0 and "generation:" in info.output and "no_repeat_ngram_size: 2" in info.output
    reloaded = zoo.load(model.save_pretrained(tmp_path / "saved"))
    assert reloaded.spec.generation == model.spec.generation
    assert torch.equal(reloaded.generate(**batch), defaults)


def test_an_old_config_json_carries_the_generation_settings_when_there_is_no_generation_config(tiny_bart, tmp_path):
    # facebook/bart-large-cnn style: the settings sit in config.json, which transformers 5's BartConfig drops; with
    # no generation_config.json transformers reads them from config.json, and so does the bart family
    copy = with_files(tiny_bart[0], tmp_path / "ckpt", config={**BART_STYLE, "task_specific_params": {
        "summarization": {"num_beams": 9}}, "add_final_layer_norm": False, "normalize_before": False})
    model = zoo.load(f"hf:{copy}")
    assert model.spec.generation == BART_STYLE
    assert "num_beams" not in model.spec.backbone.config["model_config"]
    reference = BartForConditionalGeneration.from_pretrained(copy).eval()
    assert reference.generation_config.num_beams == BART_STYLE["num_beams"]
    batch = model.processor(PROMPTS)
    assert torch.equal(model.generate(**batch), reference.generate(**reference_inputs(batch))[:, 1:])


def test_a_checkpoint_eos_in_generation_config_stops_where_the_tokenizers_would_not(tiny_bart, loaded, tmp_path):
    # BLIP-2 OPT's generation_config.json ends answers at "\n" (eos_token_id 50118), not at the tokenizer's </s>:
    # here a token the greedy answer holds midway plays that part
    batch = loaded.processor(PROMPTS)
    free = loaded.generate(**batch, **GREEDY)
    stop = int(free[1, 1])
    assert stop != 2 and stop not in free[1, :1].tolist()
    copy = with_files(tiny_bart[0], tmp_path / "ckpt", generation={
        "eos_token_id": [stop, 2], "bos_token_id": 1, "pad_token_id": 0, "decoder_start_token_id": 2,
        "forced_eos_token_id": 2})
    model = zoo.load(f"hf:{copy}")
    stopped = model.generate(**batch, **GREEDY)
    assert stopped[1, 1] == stop and bool((stopped[1, 2:] == 0).all())  # ended there, padded after
    reference = BartForConditionalGeneration.from_pretrained(copy).eval()
    assert torch.equal(stopped, reference.generate(**reference_inputs(batch), **GREEDY)[:, 1:])
    assert torch.equal(model.generate(**batch, **GREEDY, eos_token_id=2), free)  # the caller's eos wins


def test_the_generation_config_is_untrusted_plain_data(tiny_bart, tmp_path):
    """Only plain generation settings are read, each checked; a setting that names code or would change what
    generate returns is ignored, a known setting of the wrong kind is refused naming the file and the field."""
    root = tiny_bart[0]
    ignored = {"custom_generate": "evil.generate", "trust_remote_code": True, "watermarking_config": {"x": 1},
               "num_return_sequences": 4, "return_dict_in_generate": True, "output_scores": True,
               "_from_model_config": True, "cache_implementation": "static", "top_k": None}
    copy = with_files(root, tmp_path / "ok", generation={**ignored, "num_beams": 2})
    conversion = hf_checkpoint_conversion(f"hf:{copy}")[3]
    assert conversion.spec["generation"] == {"num_beams": 2}
    model = zoo.load(f"hf:{copy}")
    generated = model.generate(**model.processor(PROMPTS), max_new_tokens=4)
    assert isinstance(generated, torch.Tensor) and generated.shape[0] == len(PROMPTS)
    for bad, message in (({"num_beams": "4"}, r"generation_config.json.num_beams must be an int >= 1, got '4'"),
                         ({"do_sample": 1}, "do_sample must be true or false"),
                         ({"eos_token_id": [2, -1]}, "eos_token_id must be a token id or a non-empty list"),
                         ({"top_p": 1.5}, "top_p must be a number from 0 to 1")):
        broken = with_files(root, tmp_path / f"bad-{next(iter(bad))}", generation=bad)
        with pytest.raises(SpecError, match=message):
            zoo.load(f"hf:{broken}")
    with_files(root, tmp_path / "junk", generation={})
    (tmp_path / "junk" / "generation_config.json").write_text("[1, 2]")
    with pytest.raises(WeightsError, match="generation_config.json must be a JSON object"):
        zoo.load(f"hf:{tmp_path / 'junk'}")


def test_spec_generation_refuses_unknown_keys_and_round_trips(loaded):
    data = spec_to_dict(loaded.spec)
    spec = spec_from_dict({**data, "generation": {"num_beams": 4, "eos_token_id": [2, 7], "early_stopping": "never"}})
    assert spec_from_dict(spec_to_dict(spec)) == spec
    with pytest.raises(SpecError, match="unknown key 'logits_processor' in spec.generation; allowed keys: .*num_beams"):
        spec_from_dict({**data, "generation": {"logits_processor": "module:function"}})
    with pytest.raises(SpecError, match="spec.generation.length_penalty must be a number, got nan"):
        spec_from_dict({**data, "generation": {"length_penalty": float("nan")}})
    with pytest.raises(SpecError, match="spec.generation must be a mapping"):
        spec_from_dict({**data, "generation": ["num_beams"]})


def test_the_text_only_model_saves_and_reloads_exactly(loaded, tmp_path):
    reloaded = zoo.load(loaded.save_pretrained(tmp_path / "saved"))
    assert reloaded.spec == loaded.spec
    batch = loaded.processor(PROMPTS, targets=ANSWERS)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, reloaded(**batch).logits)


@pytest.mark.parametrize("stored", ["every copy", "the decoder's copy only"])
def test_a_file_with_tied_copies_loads_and_a_differing_copy_is_refused(tiny_bart, tmp_path, stored):
    """transformers 4 saved ``encoder/decoder.embed_tokens`` and ``lm_head`` beside ``shared``; the Hub's
    safetensors conversions kept one of the names, not always ``shared``: either loads, and a copy that differs
    is an error naming the tie."""
    root, reference = tiny_bart
    copy = Path(shutil.copytree(root, tmp_path / "ckpt"))
    state = load_file(str(copy / "model.safetensors"))
    shared = state.pop("model.shared.weight")
    tied = ("model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
            "lm_head.weight")
    kept = tied if stored == "every copy" else ("model.decoder.embed_tokens.weight",)
    save_file({**state, **{key: shared.clone() for key in kept}}, str(copy / "model.safetensors"))
    model = zoo.load(f"hf:{copy}")
    batch = model.processor(PROMPTS, targets=ANSWERS)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits,
                                   reference(**reference_inputs(batch), labels=batch["labels"]).logits,
                                   rtol=1e-4, atol=1e-4)
    save_file({**state, **{key: shared.clone() for key in kept}, "lm_head.weight": shared + 1},
              str(copy / "model.safetensors"))
    with pytest.raises(WeightsError, match="tied tensors more than once.*lm_head.weight"):
        zoo.load(f"hf:{copy}")


def test_the_key_map_names_every_key_and_rejects_strangers():
    shared = torch.ones(4, 2)
    state = {"model.shared.weight": shared, "model.encoder.embed_tokens.weight": shared.clone(),
             "model.decoder.layers.0.fc1.weight": torch.zeros(2, 2), "lm_head.weight": torch.zeros(4, 2),
             "final_logits_bias": torch.zeros(1, 4)}
    assert bart_key_map(state) == {
        "model.shared.weight": "language_model.model.shared.weight", "model.encoder.embed_tokens.weight": None,
        "model.decoder.layers.0.fc1.weight": "language_model.model.decoder.layers.0.fc1.weight",
        "lm_head.weight": "language_model.lm_head.weight", "final_logits_bias": "language_model.final_logits_bias",
    }
    with pytest.raises(ValueError, match="2 key.*classification_head.dense.weight, encoder.layers.0.fc1.weight"):
        bart_key_map({**state, "classification_head.dense.weight": torch.zeros(1),
                      "encoder.layers.0.fc1.weight": torch.zeros(1)})


def test_a_bart_model_checkpoint_loads_with_a_zero_logits_bias_as_transformers_reads_it(tmp_path):
    """A file saved by ``BartModel`` (facebook/bart-base's architecture) holds BartForConditionalGeneration's
    ``model.*`` tensors without the prefix and no ``final_logits_bias``: the zoo gives transformers' logits and
    greedy tokens, with the bias at zero, as transformers leaves it; a file mixing both layouts is refused."""
    torch.manual_seed(1)
    BartModel(AutoConfig.for_model("bart", **TINY_BART)).save_pretrained(tmp_path)
    tokenizer = load_tokenizer("bundled:tiny-bpe")
    tokenizer.add_bos_token, tokenizer.add_eos_token = True, True
    tokenizer.save_pretrained(tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    assert "final_logits_bias" not in stored and "shared.weight" in stored
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BartModel"]
    reference = BartForConditionalGeneration.from_pretrained(tmp_path).eval()
    loaded = zoo.load(f"hf:{tmp_path}")
    assert not bool(loaded.language_model.final_logits_bias.any())
    batch = loaded.processor(PROMPTS, targets=ANSWERS)
    with torch.no_grad():
        ours, theirs = loaded(**batch), reference(**reference_inputs(batch), labels=batch["labels"])
    torch.testing.assert_close(ours.logits, theirs.logits, rtol=1e-4, atol=1e-4)
    prompts = loaded.processor(PROMPTS)
    ours = loaded.generate(**prompts, **GREEDY)
    assert torch.equal(ours, reference.generate(**reference_inputs(prompts), **GREEDY)[:, 1:])
    mixed = {**stored, "model.encoder.layers.0.fc1.bias": stored["encoder.layers.0.fc1.bias"]}
    with pytest.raises(ValueError, match="fit no BART rule"):
        bart_key_map(mixed)


def test_the_config_becomes_a_spec_with_defaults_written_out():
    # config.json of facebook/bart-large-cnn as transformers 4 wrote it (fields at their defaults omitted)
    config = {"architectures": ["BartForConditionalGeneration"], "model_type": "bart", "add_bias_logits": False,
              "add_final_layer_norm": False, "normalize_before": False, "normalize_embedding": True,
              "static_position_embeddings": False, "early_stopping": True, "forced_bos_token_id": 0,
              "length_penalty": 2.0, "max_length": 142, "min_length": 56, "no_repeat_ngram_size": 3,
              "num_beams": 4, "output_past": True, "prefix": " ", "auto_map": {"AutoModel": "evil.Model"},
              "task_specific_params": {"summarization": {"num_beams": 4}}, "vocab_size": 50264}
    conversion = convert_config(config, "org/bart", "a" * 40, "hf:org/bart@main")
    assert (conversion.family, conversion.key_map, conversion.placeholder_ids) == ("bart", "bart", {})
    spec = conversion.spec
    assert spec["encoders"] == {} and spec["projectors"] == {}
    assert spec["tokenizer"] == {"type": "pretrained", "path": "org/bart", "revision": "a" * 40}
    model_config = spec["backbone"]["config"]["model_config"]
    assert model_config == {
        "model_type": "bart", "vocab_size": 50264, "max_position_embeddings": 1024, "d_model": 1024,
        "encoder_layers": 12, "encoder_ffn_dim": 4096, "encoder_attention_heads": 16, "decoder_layers": 12,
        "decoder_ffn_dim": 4096, "decoder_attention_heads": 16, "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0,
        "activation_function": "gelu", "dropout": 0.1, "attention_dropout": 0.0, "activation_dropout": 0.0,
        "init_std": 0.02, "classifier_dropout": 0.0, "scale_embedding": False, "tie_word_embeddings": True,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2,
        "forced_eos_token_id": 2}
    assert spec["generation"] == {"early_stopping": True, "forced_bos_token_id": 0, "length_penalty": 2.0,
                                  "max_length": 142, "min_length": 56, "no_repeat_ngram_size": 3, "num_beams": 4}
    parsed = spec_from_dict(spec)
    assert parsed.backbone.type == "hf-seq2seq-lm" and parsed.generation == spec["generation"]
    model_config = dict(model_config)
    assert BartConfig(**{k: v for k, v in model_config.items() if k != "model_type"}).forced_eos_token_id == 2


@pytest.mark.parametrize(("config", "message"), [
    ({"architectures": ["BartForSequenceClassification"]},
     "'BartForSequenceClassification'.*BartForConditionalGeneration or BartModel"),
    ({"normalize_before": True}, "normalize_before True is not BART's layout.*mBART"),
    ({"static_position_embeddings": True}, "static_position_embeddings True is not BART's layout"),
    ({"num_beams": 0}, "org/bart config.json.num_beams must be an int >= 1, got 0"),
])
def test_a_config_that_is_not_a_bart_text_generator_is_refused(config, message):
    with pytest.raises(SpecError, match=message):
        convert_config({"model_type": "bart", **config}, "org/bart", None, "hf:org/bart")
