"""The ``hf-seq2seq-lm`` backbone: tiny T5 and BART checkpoints saved in the Hub layout load through a spec and
give transformers' own logits and generations; modality tokens enter the encoder, the answer is the decoder's;
scoring, beam search, the training stages and save -> load work. Nothing here reaches a network or needs a GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, BartForConditionalGeneration, T5ForConditionalGeneration

import zoo
from tests.helpers import assert_reproduces, card_sample_numbers
from zoo.evaluation.evaluate import evaluate
from zoo.evaluation.runners import answer_log_likelihoods
from zoo.models.multimodal_seq2seq_lm import MultimodalSeq2SeqLM
from zoo.processing import IGNORE_INDEX, PlaceholderCountError
from zoo.spec import SpecError
from zoo.training import TrainingError, finetune, load_adapter, merge_lora

# vocab_size leaves room for tiny-bpe's 600 tokens and the <molecule> placeholder, so nothing is resized; the
# wider initialisation (initializer_factor, init_std) makes greedy and beam outputs vary from token to token
TINY_T5 = {"model_type": "t5", "vocab_size": 608, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2,
           "num_decoder_layers": 2, "num_heads": 4, "relative_attention_num_buckets": 8,
           "relative_attention_max_distance": 32, "pad_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 0,
           "initializer_factor": 5.0}
TINY_BART = {"model_type": "bart", "vocab_size": 608, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
             "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
             "max_position_embeddings": 128, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
             "decoder_start_token_id": 2, "init_std": 0.2}
REFERENCE_CLASSES = {"t5": T5ForConditionalGeneration, "bart": BartForConditionalGeneration}
PROMPTS = ["Caption: CCO", "Describe the molecule c1ccccc1 in a few words please"]
ANSWERS = ["ethanol is an alcohol", "benzene"]
GREEDY = {"max_new_tokens": 8, "do_sample": False, "num_beams": 1}


pytestmark = pytest.mark.usefixtures("hub_offline")  # every file here is local


def seq2seq_spec(backbone: dict[str, Any]) -> dict[str, Any]:
    """A molecule-graph encoder (tiny GCN) and a linear projector in front of an ``hf-seq2seq-lm`` backbone."""
    return {
        "type": "multimodal-lm",
        "encoders": {"molecule_graph": {"type": "gnn", "config": {"gnn_type": "gcn", "num_layers": 2, "hidden_size": 16}}},
        "projectors": {"molecule_graph": {"type": "linear", "config": {}}},
        "backbone": {"type": "hf-seq2seq-lm", "config": backbone},
        "tokenizer": {"type": "bundled", "path": "tiny-bpe"},
    }


@pytest.fixture(scope="module", params=sorted(REFERENCE_CLASSES))
def checkpoint(request, tmp_path_factory) -> tuple[Path, Any]:
    """A tiny random T5 or BART saved by transformers in the Hub layout (config.json + model.safetensors), and
    transformers' own model loaded back from it."""
    params = dict(TINY_T5 if request.param == "t5" else TINY_BART)
    cls = REFERENCE_CLASSES[request.param]
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp(request.param) / "checkpoint"
    cls(AutoConfig.for_model(params.pop("model_type"), **params)).save_pretrained(directory)
    assert (directory / "model.safetensors").is_file()
    return directory, cls.from_pretrained(directory).eval()


@pytest.fixture(scope="module")
def loaded(checkpoint) -> MultimodalSeq2SeqLM:
    return zoo.load(seq2seq_spec({"pretrained": str(checkpoint[0])}))


def test_the_checkpoint_loads_as_the_encoder_decoder_of_a_seq2seq_model(checkpoint, loaded):
    reference = checkpoint[1]
    assert isinstance(loaded, MultimodalSeq2SeqLM) and type(loaded.language_model) is type(reference)
    ours, theirs = loaded.language_model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_prompt_goes_to_the_encoder_and_the_answer_is_the_labels(loaded):
    batch = loaded.processor(PROMPTS, targets=ANSWERS, padding_side="left")
    tokenizer = loaded.processor.tokenizer
    for ids, mask, labels, prompt, answer in zip(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                                 PROMPTS, ANSWERS, strict=True):
        encoded = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert ids[mask.bool()].tolist() == [tokenizer.bos_token_id, *encoded, tokenizer.eos_token_id]
        assert mask.tolist() == sorted(mask.tolist(), reverse=True)  # right padded whatever was asked
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert labels[labels != IGNORE_INDEX].tolist() == answer_ids and labels[: len(answer_ids)].tolist() == answer_ids


def test_text_only_logits_match_transformers(checkpoint, loaded):
    reference = checkpoint[1]
    batch = loaded.processor(PROMPTS, targets=ANSWERS)
    with torch.no_grad():
        ours = loaded(**batch)
        theirs = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    assert ours.logits.dtype == torch.float32
    torch.testing.assert_close(ours.logits, theirs.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.loss, theirs.loss, rtol=1e-4, atol=1e-4)


def test_greedy_generation_matches_transformers(checkpoint, loaded):
    reference = checkpoint[1]
    batch = loaded.processor(PROMPTS)
    tokenizer = loaded.processor.tokenizer
    ours = loaded.generate(**batch, **GREEDY)
    theirs = reference.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **GREEDY,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    assert theirs[:, 0].tolist() == [reference.config.decoder_start_token_id] * len(PROMPTS)
    assert torch.equal(ours, theirs[:, 1:])
    assert len(set(ours[:, :-1].flatten().tolist())) > 2 and not torch.equal(ours[0], ours[1])  # not degenerate
    assert loaded.generate_text(PROMPTS, **GREEDY) == loaded.processor.batch_decode(theirs)


def test_beam_search_returns_k_candidates_per_prompt(checkpoint, loaded):
    reference = checkpoint[1]
    beams = {"max_new_tokens": 6, "do_sample": False, "num_beams": 3, "num_return_sequences": 3}
    texts = loaded.generate_text(PROMPTS, **beams)
    assert [len(candidates) for candidates in texts] == [3, 3]
    batch = loaded.processor(PROMPTS)
    tokenizer = loaded.processor.tokenizer
    theirs = loaded.processor.batch_decode(reference.generate(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **beams,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))
    assert texts == [theirs[:3], theirs[3:]]
    assert [loaded.generate_text([p], **beams)[0] for p in PROMPTS] == texts  # batch-size invariant


def test_answer_log_likelihoods_are_transformers_and_batch_invariant(checkpoint, loaded):
    reference = checkpoint[1]
    batch = loaded.processor(PROMPTS, targets=ANSWERS, padding_side="left")
    with torch.no_grad():
        together, counts = answer_log_likelihoods(loaded, batch)
        alone = torch.cat([answer_log_likelihoods(loaded, loaded.processor([p], targets=[a]))[0]
                           for p, a in zip(PROMPTS, ANSWERS, strict=True)])
        logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           labels=batch["labels"]).logits
    labels = batch["labels"]
    logprobs = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    expected = (logprobs * (labels != IGNORE_INDEX)).sum(-1)
    assert counts.tolist() == (labels != IGNORE_INDEX).sum(-1).tolist()  # every answer token (and EOS) is scored
    torch.testing.assert_close(together, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("config", "error"), [
    ({}, "give exactly one of 'pretrained'"),
    ({"model_config": {"d_model": 32}}, r"model_config needs a 'model_type' \(e.g. 't5', 'bart'\)"),
    ({"model_config": TINY_T5, "use_fast": True}, "unknown key 'use_fast' in spec.backbone.config"),
])
def test_a_bad_backbone_config_says_what_to_give(config, error):
    with pytest.raises(SpecError, match=error):
        zoo.build(seq2seq_spec(config))


def test_a_tokenizer_without_eos_is_refused_with_the_fix():
    """An encoder-decoder ends every input and answer with EOS; BERT's WordPiece declares none."""
    spec = {**seq2seq_spec({"model_config": TINY_T5}), "tokenizer": {"type": "bundled", "path": "bert-base-uncased"}}
    with pytest.raises(ValueError, match=r"no EOS token.*tokenizer.eos_token = '\[SEP\]'"):
        zoo.build(spec)


# ---- a multimodal seq2seq model: molecule tokens in the encoder ----------------------------------------------

MOLECULE_PROMPT = "<molecule> Which functional group?"
QA_ROWS = [
    {"smiles": smiles, "question": "Which functional group?", "options": ["alcohol", "acid", "amine"],
     "answer": answer, "aspect": "groups"}
    for smiles, answer in [("CCO", 0), ("CC(=O)O", 1), ("CCN", 2), ("CCCO", 0), ("OC(=O)CC", 1), ("NCCC", 2),
                           ("OCC(C)C", 0), ("CCCC(=O)O", 1)]
]


def molecule_model() -> MultimodalSeq2SeqLM:
    """A random tiny T5 behind the GCN, at T5's default initialisation (the widened one above trains erratically)."""
    return zoo.build(seq2seq_spec({"model_config": {**TINY_T5, "initializer_factor": 1.0}}))


@pytest.fixture
def qa_file(tmp_path) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in QA_ROWS) + "\n")
    return path


def test_molecule_tokens_fill_the_encoder_placeholders_and_train_the_projector():
    model = molecule_model()
    batch = model.processor([MOLECULE_PROMPT, f"Compare {MOLECULE_PROMPT} with <molecule>"],
                            {"molecule_graph": [["CCO"], ["CC(=O)O", "c1ccccc1"]]}, targets=["alcohol", "acid"])
    placeholder = model.processor.placeholder_ids["molecule_graph"]
    assert (batch["input_ids"] == placeholder).sum(1).tolist() == [3, 4 + 6]  # one token per heavy atom
    assert not (batch["labels"] == placeholder).any()
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.projectors["molecule_graph"].proj.weight.grad.abs().sum() > 0


def test_a_wrong_placeholder_count_is_the_existing_error():
    model = molecule_model()
    with pytest.raises(PlaceholderCountError, match="prompt 0 has 1 <molecule> placeholder.*2 molecule_graph item"):
        model.processor([MOLECULE_PROMPT], {"molecule_graph": [["CCO", "CCN"]]})
    batch = model.processor([MOLECULE_PROMPT], {"molecule_graph": [["CCO"]]})
    batch["input_ids"][0, 1] = model.processor.tokenizer.eos_token_id  # one placeholder token lost
    with pytest.raises(PlaceholderCountError, match="sample 0 has 2 <molecule> placeholder tokens.*produce 3"):
        model(**batch)


def test_multiple_choice_and_beam_generation_tasks_run(qa_file, tmp_path):
    model = molecule_model().eval()
    scored = evaluate(model, "molecule-qa", qa_file, progress=False, report=False)
    assert scored["num_failed"] == 0 and set(scored["metrics"]) == {"accuracy", "accuracy/groups"}
    (tmp_path / "src-test.txt").write_text("<RX_1> C C O\n<RX_2> c 1 c c c c c 1\n")
    (tmp_path / "tgt-test.txt").write_text("C C . O\nC 1 = C C = C C = C 1\n")
    generated = evaluate(model, "retro-uspto50k", tmp_path, progress=False, report=False, modality=None,
                         prompt_template="Product: {item} Reactants:",
                         **{"generation.max_new_tokens": 4, "generation.num_beams": 3,
                            "generation.num_return_sequences": 3})
    assert generated["num_failed"] == 0 and all(len(r["prediction"]) == 3 for r in generated["rows"])


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "step" in r]


def _same_outputs(model: MultimodalSeq2SeqLM, reloaded: MultimodalSeq2SeqLM) -> None:
    prompts = [MOLECULE_PROMPT, f"Again: {MOLECULE_PROMPT}"]
    items = {"molecule_graph": [["CCO"], ["CC(=O)O"]]}
    batch = model.processor(prompts, items, targets=["alcohol", "acid"])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)
    assert model.generate_text(prompts, items, **GREEDY) == reloaded.generate_text(prompts, items, **GREEDY)


def test_full_stage_loss_falls_and_the_model_saves_and_reloads_exactly(qa_file, tmp_path):
    result = finetune(molecule_model(), "molecule-qa", qa_file, "full", tmp_path, max_steps=8, batch_size=4,
                      lr=1e-2, lr_schedule="constant", warmup_ratio=0.0, progress=False)
    losses = _losses(tmp_path)
    assert len(losses) == 8 and losses[-1] < 0.6 * losses[0]
    model = result.model.eval()
    reloaded = zoo.load(tmp_path / "final")
    assert isinstance(reloaded, MultimodalSeq2SeqLM)
    _same_outputs(model, reloaded)
    _same_outputs(model, zoo.load(model.save_pretrained(tmp_path / "saved")))


def _changed(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}


def test_align_trains_the_projector_only(qa_file, tmp_path):
    model = molecule_model()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = finetune(model, "molecule-qa", qa_file, "align", tmp_path, max_steps=2, batch_size=4, lr=1e-2,
                      progress=False)
    assert _changed(result.model, before) == {k for k in before if k.startswith("projectors.")}
    _same_outputs(result.model.eval(), zoo.load(tmp_path / "final"))


def test_instruct_trains_seq2seq_lora_adapters_that_reload_and_merge(qa_file, tmp_path):
    from peft import PeftModelForSeq2SeqLM

    model = molecule_model()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = finetune(model, "molecule-qa", qa_file, "instruct", tmp_path, max_steps=2, batch_size=4, lr=1e-2,
                      merge_lora=False, progress=False)
    model = result.model.eval()
    assert isinstance(model.language_model, PeftModelForSeq2SeqLM)
    params = dict(model.named_parameters())
    base = {k: k.replace("base_model.model.", "").replace(".base_layer", "") for k in params if "lora_" not in k}
    changed = {k for k, original in base.items() if not torch.equal(params[k], before[original])}
    assert changed == {k for k in params if k.startswith("projectors.")}
    lora_b = [params[k] for k in params if "lora_B" in k]  # initialised to zero: trained if no longer zero
    assert lora_b and all(bool(b.abs().sum() > 0) for b in lora_b)
    batch = model.processor([MOLECULE_PROMPT], {"molecule_graph": [["CCO"]]}, targets=["alcohol"])
    with torch.no_grad():
        peft_logits = model(**batch).logits
        assert torch.equal(load_adapter(result.final_dir, molecule_model())(**batch).logits, peft_logits)
        merged = zoo.load(merge_lora(model).save_pretrained(tmp_path / "merged"))
        assert not any("lora" in k for k in merged.state_dict())
        torch.testing.assert_close(merged(**batch).logits, peft_logits, rtol=0, atol=1e-5)


def test_packed_batching_is_refused(qa_file, tmp_path):
    with pytest.raises(TrainingError, match="batching='packed' is for causal LMs"):
        finetune(molecule_model(), "molecule-qa", qa_file, "full", tmp_path, max_steps=1, batch_size=4,
                 batching="packed", progress=False)


# ---- the molcap-gnn-t5-tiny card: frozen pretrained GCN -> MLP -> a T5 trained here, captioning ChEBI-20 ------

CAPTIONER = "molcap-gnn-t5-tiny"
CHEBI20_SAMPLE = Path(__file__).resolve().parents[1] / "tasks" / "samples" / "chebi20-test-100.tsv"


def test_the_captioning_card_builds_a_t5_whose_special_ids_are_its_tokenizers():
    from zoo.cards import card
    from zoo.recipes import Recipe

    recipe = Recipe.from_card(CAPTIONER)
    assert (recipe.task, recipe.stage, recipe.settings["frozen"]) == ("chebi20-graph-captioning", "full", ["encoders"])
    model = zoo.build(card(CAPTIONER).spec)
    tokenizer, config = model.processor.tokenizer, model.language_model.config
    assert isinstance(model, MultimodalSeq2SeqLM) and config.model_type == "t5"
    # T5 starts the decoder with its pad token; the labels end with the tokenizer's EOS, which stops generation
    assert (config.pad_token_id, config.eos_token_id, config.decoder_start_token_id) == (
        tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert model.language_model.get_input_embeddings().num_embeddings == config.vocab_size >= len(tokenizer)


def test_the_captioning_card_reproduces_its_sample_numbers():
    expected = card_sample_numbers(CAPTIONER, "chebi20-graph-captioning", CHEBI20_SAMPLE.name)
    assert {"bleu2", "bleu4", "rougeL_f_no_stemming", "meteor_exact"} <= set(expected)
    results = evaluate(CAPTIONER, "chebi20-graph-captioning", CHEBI20_SAMPLE, batch_size=16, progress=False,
                       report=False)
    assert results["num_rows"] == 100
    assert_reproduces(results, expected)
