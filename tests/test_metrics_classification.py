"""Zero-shot classification: template ensembling, acc@k with deterministic ties, mean per-class recall."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.metrics import accuracy_at_k, ensemble_class_embeddings, mean_per_class_recall


def test_ensemble_normalises_each_template_then_the_mean() -> None:
    # Class 0: (2, 0) and (0, 3) normalise to (1, 0) and (0, 1); mean (0.5, 0.5); renormalised (.7071, .7071).
    # Class 1: a single template (0, -5) -> (0, -1).
    out = ensemble_class_embeddings(torch.tensor([[[2.0, 0.0], [0.0, 3.0]], [[0.0, -5.0], [0.0, -1.0]]]))
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(out, torch.tensor([[s, s], [0.0, -1.0]]))
    ragged = ensemble_class_embeddings([torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([[0.0, -5.0]])])
    torch.testing.assert_close(ragged, torch.tensor([[s, s], [0.0, -1.0]]))


def test_ensemble_rejects_zero_and_nan_templates() -> None:
    with pytest.raises(ValueError, match="class 1 has an all-zero template"):
        ensemble_class_embeddings([torch.ones(1, 2), torch.zeros(1, 2)])
    with pytest.raises(ValueError, match="templates of class 0 has NaN .* rows 1"):
        ensemble_class_embeddings([torch.tensor([[1.0, 0.0], [float("nan"), 0.0]])])


SCORES = torch.tensor(
    [
        [0.9, 0.1, 0.0],  # top-1 class 0, top-2 {0, 1}
        [0.5, 0.5, 0.1],  # tie: class 0 wins top-1, top-2 {0, 1}
        [0.1, 0.2, 0.7],  # top-1 class 2, top-2 {2, 1}
        [0.3, 0.3, 0.3],  # full tie: top-1 class 0, top-2 {0, 1}
    ]
)


def test_accuracy_at_k_hand_computed_with_ties() -> None:
    labels = torch.tensor([0, 1, 1, 2])
    assert accuracy_at_k(SCORES, labels, k=1) == pytest.approx(1 / 4)  # only sample 0
    assert accuracy_at_k(SCORES, labels, k=2) == pytest.approx(3 / 4)  # samples 0, 1, 2
    assert accuracy_at_k(SCORES, labels, k=3) == 1.0
    with pytest.raises(ValueError, match="k must be between 1 and"):
        accuracy_at_k(SCORES, labels, k=5)


def test_mean_per_class_recall_differs_from_accuracy() -> None:
    # predictions 0, 0, 2, 0 ; labels 0, 0, 2, 1 -> class 0: 2/2, class 2: 1/1, class 1: 0/1
    labels = torch.tensor([0, 0, 2, 1])
    assert mean_per_class_recall(SCORES, labels) == pytest.approx((1 + 1 + 0) / 3)
    # unbalanced: labels 0,0,0 (all right) and 1 (wrong) -> accuracy 3/4, mean recall (1 + 0)/2
    labels = torch.tensor([0, 0, 0, 1])
    scores = torch.tensor([[1.0, 0.0]] * 4)
    assert accuracy_at_k(scores, labels) == 0.75
    assert mean_per_class_recall(scores, labels) == 0.5


def test_length_mismatch_names_both_lengths() -> None:
    with pytest.raises(ValueError, match="scores has 4 items but labels has 3"):
        accuracy_at_k(SCORES, torch.tensor([0, 1, 2]))
