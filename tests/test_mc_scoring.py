"""Multiple-choice scoring that runs each question once and its options on the question's KV cache: the same
log-likelihoods (fp32, 1e-5) and the same chosen options as scoring every option as a full prompt-and-answer row."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.helpers import image, image_molecule_lm_spec
from tests.test_seq2seq_backbone import molecule_model
from zoo.evaluation.runners import answer_log_likelihoods, build_options, score_options, shares_prompt

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def vlm():
    torch.manual_seed(0)
    return zoo.build("tiny-test-vlm").eval()


def _full_rows(model, prompts, items, options) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-option path: every option a whole left-padded row after its own copy of the prompt and items."""
    flat_prompts = [p for p, opts in zip(prompts, options, strict=True) for _ in opts]
    flat_items = {m: [per for per, opts in zip(v, options, strict=True) for _ in opts] for m, v in items.items()}
    targets = [o for opts in options for o in opts]
    with torch.no_grad():
        return answer_log_likelihoods(model, model.processor(flat_prompts, flat_items, targets=targets))


def _shared(model, prompts, items, options) -> tuple[torch.Tensor, torch.Tensor]:
    batch = build_options(model, prompts, items, options)
    assert batch.continuations is not None, "a causal LM should share its prompt cache"
    return score_options(model, batch)


def _same_choices(shared, full, options) -> None:
    (ll, counts), (ll_full, counts_full) = shared, full
    torch.testing.assert_close(ll, ll_full, **TOLERANCE)
    assert torch.equal(counts, counts_full)
    start = 0
    for opts in options:
        part = slice(start, start + len(opts))
        for score, score_full in ((ll[part], ll_full[part]), (ll[part] / counts[part], ll_full[part] / counts_full[part])):
            assert int(score.argmax()) == int(score_full.argmax())  # raw and length-normalised
        start += len(opts)


PROMPTS = ["<image> What colour? Answer:", "<image> A much longer second question about the shape, which one is it?",
           "<image> Third:"]
OPTIONS = [["red", "a considerably longer green option with many tokens", "b"], ["x", "yellow"],
           ["circle", "square", "triangle", "c", "another shape entirely"]]


def test_shared_prompt_scores_match_full_rows_with_uneven_options(vlm):
    items = {"image": [[image(i)] for i in range(len(PROMPTS))]}
    shared = _shared(vlm, PROMPTS, items, OPTIONS)
    full = _full_rows(vlm, PROMPTS, items, OPTIONS)
    one_token = [len(vlm.processor.tokenizer(o, add_special_tokens=False)["input_ids"]) == 1 for opts in OPTIONS for o in opts]
    assert sum(one_token) >= 3 and len(set(full[1].tolist())) >= 3  # one-token options and several lengths
    _same_choices(shared, full, OPTIONS)


def test_a_question_scores_the_same_alone_and_beside_others(vlm):
    items = {"image": [[image(i)] for i in range(len(PROMPTS))]}
    together, _ = _shared(vlm, PROMPTS, items, OPTIONS)
    alone, _ = _shared(vlm, PROMPTS[1:2], {"image": items["image"][1:2]}, OPTIONS[1:2])
    torch.testing.assert_close(together[3:5], alone, **TOLERANCE)


def test_empty_options_score_eos_alone_from_the_prompt_logits(vlm):
    items = {"image": [[image(0)], [image(1)]]}
    options = [["", ""], ["", "", ""]]
    shared = _shared(vlm, PROMPTS[:2], items, options)
    assert shared[1].tolist() == [1] * 5  # EOS only: the one-token continuation
    _same_choices(shared, _full_rows(vlm, PROMPTS[:2], items, options), options)


def test_two_modalities_are_merged_into_the_shared_prompt():
    torch.manual_seed(0)
    model = zoo.build(image_molecule_lm_spec()).eval()
    prompts = ["<image> and <molecule>: which?", "<molecule> alone, then <image>, longer question here?"]
    items = {"image": [[image(3)], [image(4)]], "molecule_graph": [["CCO"], ["c1ccccc1O"]]}
    options = [["alcohol", "amine", "acid"], ["phenol", "a ketone group"]]
    _same_choices(_shared(model, prompts, items, options), _full_rows(model, prompts, items, options), options)


def test_a_right_padded_prompt_batch_is_refused(vlm):
    batch = vlm.processor(PROMPTS[:2], {"image": [[image(0)], [image(1)]]}, padding_side="right")
    with pytest.raises(ValueError, match="left padding"):
        vlm.continuation_logits(batch, [[5, 6], [7]], torch.tensor([0, 1]))


def test_an_encoder_decoder_keeps_one_full_row_per_option():
    model = molecule_model().eval()
    prompts, options = ["<molecule> Which group?"] * 2, [["alcohol", "acid", "amine"], ["alcohol", "acid"]]
    items = {"molecule_graph": [["CCO"], ["CC(=O)O"]]}
    assert not shares_prompt(model)
    batch = build_options(model, prompts, items, options)
    assert batch.continuations is None and batch.prompts["labels"].shape[0] == 5
    ll, counts = score_options(model, batch)
    torch.testing.assert_close(ll, _full_rows(model, prompts, items, options)[0], **TOLERANCE)
    with pytest.raises(ValueError, match="encoder-decoder"):
        model.continuation_logits(model.processor(prompts, items), [[5], [6]], torch.tensor([0, 1]))
