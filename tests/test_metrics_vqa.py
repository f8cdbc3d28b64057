"""VQAv2 accuracy: one test per quirk of the official vqaEval.py, plus multiple-choice scoring."""

from __future__ import annotations

import pytest

from tasks.metrics import (
    choose_options,
    multiple_choice_accuracy,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
    vqa_scores,
)


def test_punctuation_removed_when_touching_a_space_else_spaced() -> None:
    assert process_punctuation("hello, world") == "hello world"  # ", " touches a space: deleted
    assert process_punctuation("red-green") == "red green"  # no space around "-": becomes a space
    assert process_punctuation("yes!") == "yes "
    assert process_punctuation("2,000 (approx)") == "2000 approx"  # a digit,digit group deletes all marks


def test_period_strip_keeps_decimals() -> None:
    assert process_punctuation("2.5") == "2.5"
    assert process_punctuation("yes.") == "yes"
    assert process_punctuation("mr. smith") == "mr smith"
    # The official call passes re.UNICODE (32) as the count: only 32 periods are removed.
    assert process_punctuation("a" + "." * 40) == "a" + "." * 8


def test_number_words_become_digits() -> None:
    assert process_digit_article("Two dogs") == "2 dogs"
    assert process_digit_article("none") == "0"
    assert process_digit_article("eleven") == "eleven"  # only zero..ten are mapped


def test_articles_are_removed() -> None:
    assert process_digit_article("the red car") == "red car"
    assert process_digit_article("A dog and an apple") == "dog and apple"


def test_contractions_are_fixed() -> None:
    assert process_digit_article("dont know") == "don't know"
    assert process_digit_article("Im") == "im"  # the official table's capitalised keys never match


def test_normalisation_applies_when_answers_differ() -> None:
    answers = ["two"] * 9 + ["three"]
    assert vqa_accuracy("2", answers) == 1.0
    assert vqa_accuracy("The two.", answers) == 1.0
    assert vqa_accuracy("dont", ["don't"] * 4 + ["no"] * 6) == 1.0


def test_all_ten_agree_skips_normalisation() -> None:
    assert vqa_accuracy("2", ["Two"] * 10) == 0.0  # no number-word mapping, no lowercasing
    assert vqa_accuracy("Two", ["Two"] * 10) == 1.0
    assert vqa_accuracy("yes", ["Yes"] * 10) == 0.0
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0  # whitespace is still stripped


def test_leave_one_out_min_matches_over_three() -> None:
    # 2 humans said "cat": each "cat" answer leaves 1 match -> 1/3; each "dog" leaves 2 -> 2/3.
    assert vqa_accuracy("cat", ["cat"] * 2 + ["dog"] * 8) == pytest.approx((2 * 1 / 3 + 8 * 2 / 3) / 10)
    assert vqa_accuracy("cat", ["cat"] * 3 + ["dog"] * 7) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)
    assert vqa_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(9 * (1 / 3) / 10)
    assert vqa_accuracy("cat", ["cat"] * 4 + ["dog"] * 6) == 1.0
    assert vqa_accuracy("bird", ["cat"] * 4 + ["dog"] * 6) == 0.0


def test_vqa_scores_per_question_and_overall() -> None:
    result = vqa_scores(["cat", "2"], [["cat"] * 2 + ["dog"] * 8, ["Two"] * 10])
    assert result.per_question == pytest.approx([0.6, 0.0])
    assert result.overall == pytest.approx(0.3)
    with pytest.raises(ValueError, match="predictions has 1 items but answers has 2"):
        vqa_scores(["cat"], [["cat"] * 10, ["dog"] * 10])
    with pytest.raises(ValueError, match="question 0: .*at least two"):
        vqa_scores(["cat"], [["cat"]])


LOGLIK = [[-1.0, -2.0, -3.0, -0.5], [-4.0, -1.0, -1.0, -2.0]]


def test_multiple_choice_sum_log_likelihood_ties_lower_index() -> None:
    assert choose_options(LOGLIK) == [3, 1]
    result = multiple_choice_accuracy(LOGLIK, [3, 2], aspects=["structure", "property"])
    assert result.accuracy == 0.5
    assert result.per_aspect == {"property": 0.0, "structure": 1.0}
    assert result.scoring == "sum_log_likelihood"


def test_multiple_choice_length_normalised() -> None:
    # per-token scores: q0 [-1, -2, -3, -0.5]; q1 [-1, -1, -0.5, -2] -> option 2
    counts = [[1, 1, 1, 1], [4, 1, 2, 1]]
    result = multiple_choice_accuracy(LOGLIK, [3, 2], option_token_counts=counts)
    assert result.predictions == [3, 2]
    assert result.accuracy == 1.0
    assert result.scoring == "mean_log_likelihood_per_token"


def test_multiple_choice_input_errors() -> None:
    with pytest.raises(ValueError, match="question 1 has answer 4 but only 4 options"):
        multiple_choice_accuracy(LOGLIK, [0, 4])
    with pytest.raises(ValueError, match="question 0 has a NaN"):
        choose_options([[float("nan"), 0.0]])
