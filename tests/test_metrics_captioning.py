"""Caption BLEU/ROUGE/METEOR-exact and MolT5-style text -> molecule metrics, on hand-computed cases."""

from __future__ import annotations

import math
import sys

import pytest

from tasks.metrics import (
    caption_bleu,
    caption_metrics,
    corpus_bleu,
    levenshtein_distance,
    meteor_exact,
    molecule_generation_metrics,
    rouge_f_no_stemming,
    smiles_char_bleu4,
    word_tokenize,
)


def test_word_tokenize() -> None:
    assert word_tokenize("Hello, World! It's 2-methyl") == ["hello", "world", "it", "s", "2", "methyl"]


def test_bleu_all_orders_match() -> None:
    # hyp 7 tokens, ref 6: precisions 6/7, 5/6, 4/5, 3/4; hypothesis longer so no brevity penalty.
    scores = caption_bleu(["the cat sat on the mat today"], ["the cat sat on the mat"])
    assert scores["bleu2"] == pytest.approx(math.sqrt(6 / 7 * 5 / 6))
    assert scores["bleu4"] == pytest.approx((3 / 7) ** 0.25)


def test_bleu_brevity_penalty_and_missing_order() -> None:
    # 2 tokens vs 6: precisions 1, BP = exp(1 - 6/2)
    assert caption_bleu(["the cat"], ["the cat sat on the mat"])["bleu2"] == pytest.approx(math.exp(-2))
    # no 4-gram match: nltk's method0 uses sys.float_info.min for that order (nearly 0, not exactly)
    bleu4 = corpus_bleu(
        [[["the", "cat", "is", "on", "the", "mat"]]], [["the", "cat", "sat", "on", "the", "mat"]]
    )
    expected = math.exp(
        (math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4) + math.log(sys.float_info.min)) / 4
    )
    assert bleu4 == pytest.approx(expected)
    assert 0 < bleu4 < 1e-70
    assert corpus_bleu([[["a"]]], [["b"]]) == 0.0


def test_bleu_is_corpus_level_not_sentence_average() -> None:
    # unigrams pooled (2 + 1) / 4, bigrams (1 + 0) / 2 -> sqrt(3/8); a sentence average would be ~0.5
    refs = [[["a", "b"]], [["c", "e"]]]
    hyps = [["a", "b"], ["c", "d"]]
    assert corpus_bleu(refs, hyps, max_order=2) == pytest.approx(math.sqrt(3 / 8))


def test_bleu_closest_reference_length_prefers_shorter_on_tie() -> None:
    # hyp length 6, references 4 and 8 are equally close: 4 is used, so no brevity penalty.
    refs = [[["x"] * 4, ["y"] * 8]]
    assert corpus_bleu(refs, [["x"] * 6], max_order=1) == pytest.approx(4 / 6)


def test_rouge_hand_computed() -> None:
    scores = rouge_f_no_stemming(["the cat sat on the mat"], ["the cat is on the mat"])
    assert scores["rouge1"] == pytest.approx(5 / 6)  # 5 of 6 unigrams overlap both ways
    assert scores["rouge2"] == pytest.approx(3 / 5)
    assert scores["rougeL"] == pytest.approx(5 / 6)  # LCS "the cat on the mat"
    # best reference per sample; second sample has no overlap
    multi = rouge_f_no_stemming(["a b", "x"], [["c d", "a b"], "y"])
    assert multi == {"rouge1": 0.5, "rouge2": 0.5, "rougeL": 0.5}


def test_meteor_exact_hand_computed() -> None:
    # 3 of 4 match, P = R = 3/4, Fmean 3/4; 2 chunks over 3 matches: penalty 0.5 * (2/3)^3
    assert meteor_exact(["a b c d"], ["a b x d"]) == pytest.approx(0.75 * (1 - 0.5 * (2 / 3) ** 3))
    # P = 1, R = 1/2: Fmean = 0.5 / (0.9 * 1 + 0.1 * 0.5); one chunk of 2: penalty 0.5 * (1/2)^3
    assert meteor_exact(["a b"], ["a b c d"]) == pytest.approx(0.5 / 0.95 * (1 - 0.0625))
    assert meteor_exact(["zzz"], ["a b"]) == 0.0


def test_meteor_exact_uses_nltk_greedy_alignment() -> None:
    # nltk aligns from the last word backwards to the last free equal reference word, giving 5 chunks here
    # (an optimal aligner would find 2): score = 1 - 0.5 * (5/6)^3.
    assert meteor_exact(["the cat sat on the mat"], ["on the mat the cat sat"]) == pytest.approx(
        1 - 0.5 * (5 / 6) ** 3
    )


def test_caption_metrics_keys_are_honest() -> None:
    keys = set(caption_metrics(["a b"], ["a b"]))
    assert keys == {
        "bleu2",
        "bleu4",
        "rouge1_f_no_stemming",
        "rouge2_f_no_stemming",
        "rougeL_f_no_stemming",
        "meteor_exact",
    }


def test_levenshtein() -> None:
    assert levenshtein_distance("kitten", "sitting") == 3
    assert levenshtein_distance("", "abc") == 3
    assert levenshtein_distance("flaw", "lawn") == 2
    assert levenshtein_distance("same", "same") == 0


def test_smiles_char_bleu4() -> None:
    assert smiles_char_bleu4(["CCCCO"], ["CCCCO"]) == pytest.approx(1.0)
    # all n-gram precisions are 1, brevity penalty exp(1 - 6/4)
    assert smiles_char_bleu4(["CCCC"], ["CCCCCC"]) == pytest.approx(math.exp(-0.5))


def test_molecule_generation_counts_invalid_predictions() -> None:
    m = molecule_generation_metrics(["OCC", "C(", "c1ccccc1"], ["CCO", "CC", "c1ccccc1"])
    assert m["canonical_exact_match"] == pytest.approx(2 / 3)
    assert m["validity"] == pytest.approx(2 / 3)
    assert m["num_invalid"] == 1.0
    assert m["mean_levenshtein"] == pytest.approx((2 + 1 + 0) / 3)
    for name in ("maccs", "rdk", "morgan2_2048"):
        assert m[f"{name}_tanimoto"] == pytest.approx(2 / 3)  # invalid scores 0
        assert m[f"{name}_tanimoto_valid_only"] == 1.0
    with pytest.raises(ValueError, match="reference 0 .* not a valid SMILES"):
        molecule_generation_metrics(["C"], ["C1CC"])
