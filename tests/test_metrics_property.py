"""ROC-AUC with missing labels and skipped tasks, R², RMSE and MAE against scikit-learn, and the deterministic scaffold split."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.data import murcko_scaffold, scaffold_split
from tasks.metrics import mae, multitask_roc_auc, r_squared, rmse, roc_auc

NAN = float("nan")


def test_roc_auc_hand_computed() -> None:
    # positive pairs ranked correctly: (0.35 > 0.1), (0.8 > 0.1), (0.8 > 0.4); wrong: (0.35 < 0.4) -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts half
    assert roc_auc([1, 0, 1], [0.2, 0.2, 0.9]) == 0.75  # (tie 0.5 + win 1) / 2


def test_multitask_roc_auc_ignores_nan_and_skips_single_class_tasks() -> None:
    labels = [[0, NAN, 1], [1, 1, NAN], [1, 1, 0], [0, NAN, NAN]]
    scores = [[0.1, NAN, 0.2], [0.9, 0.3, 0.5], [0.8, 0.2, 0.9], [0.7, 0.1, 0.0]]
    result = multitask_roc_auc(labels, scores)
    # task 0: both positives above both negatives -> 1.0; task 1: only positives -> skipped;
    # task 2: rows 0 (1, 0.2) and 2 (0, 0.9) -> 0.0
    assert result.per_task == {0: 1.0, 2: 0.0}
    assert result.skipped_tasks == [1]
    assert result.mean == 0.5
    with pytest.raises(ValueError, match="no task has both classes"):
        multitask_roc_auc([[1], [1]], [[0.2], [0.3]])
    with pytest.raises(ValueError, match="task 0: scores are NaN for labelled rows 1"):
        multitask_roc_auc([[0], [1]], [[0.2], [NAN]])


def test_rmse_and_mae() -> None:
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="predictions has 2 items but targets has 3"):
        rmse([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="targets have NaN .* rows 2"):
        mae([1, 2, 3], [1, 2, NAN])


MOLECULES = [
    "c1ccccc1C",
    "c1ccccc1CC",
    "c1ccccc1O",
    "c1ccccc1N",  # benzene scaffold (4)
    "C1CCCCC1C",
    "C1CCCCC1O",  # cyclohexane (2, first index 4)
    "CCO",
    "CCC",  # acyclic, empty scaffold (2, first index 6)
    "c1ccncc1C",  # pyridine (1, index 8)
    "c1ccc2ccccc2c1",  # naphthalene (1, index 9)
]


def test_scaffold_split_hand_computed() -> None:
    # Order: benzene (4), acyclic (2, first 6), cyclohexane (2, first 4), naphthalene (9), pyridine (8).
    # Train takes sets while <= 8 molecules: 4 + 2 + 2; naphthalene fits valid (<= 9); pyridine -> test.
    assert murcko_scaffold("CCO") == ""
    split = scaffold_split(MOLECULES)
    assert split.train == [0, 1, 2, 3, 4, 5, 6, 7]
    assert split.valid == [9]
    assert split.test == [8]


def test_scaffold_split_deterministic_and_disjoint_on_moleculenet(shared_dir) -> None:
    import csv

    with (shared_dir / "data" / "moleculenet" / "bace.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    smiles = [row["mol"] for row in rows][:400]
    first, second = scaffold_split(smiles), scaffold_split(smiles)
    assert first == second
    parts = [set(first.train), set(first.valid), set(first.test)]
    assert set().union(*parts) == set(range(len(smiles)))
    assert sum(len(p) for p in parts) == len(smiles)
    scaffolds = [{murcko_scaffold(smiles[i]) for i in part} for part in parts]
    assert not (scaffolds[0] & scaffolds[1] or scaffolds[0] & scaffolds[2] or scaffolds[1] & scaffolds[2])
    assert len(first.train) <= 0.8 * len(smiles)


def test_scaffold_split_invalid_smiles_names_the_row() -> None:
    with pytest.raises(ValueError, match="molecule 1: 'C1CC' is not a valid SMILES"):
        scaffold_split(["CCO", "C1CC"])


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=64)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=40))
def test_regression_metrics_equal_scikit_learn(pairs: list[tuple[float, float]]) -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    predictions, targets = [p for p, _ in pairs], [t for _, t in pairs]
    assert r_squared(predictions, targets) == pytest.approx(r2_score(targets, predictions), rel=1e-9, abs=1e-9)
    assert rmse(predictions, targets) == pytest.approx(math.sqrt(mean_squared_error(targets, predictions)), rel=1e-9)
    assert mae(predictions, targets) == pytest.approx(mean_absolute_error(targets, predictions), rel=1e-9)


def test_r_squared_hand_computed_and_its_edge_cases() -> None:
    # targets 1, 2, 3 (SS_tot = 2); predictions 1, 2, 2 (SS_res = 1) -> 1 - 1/2
    assert r_squared([1, 2, 2], [1, 2, 3]) == 0.5
    assert r_squared([2, 2, 2], [1, 2, 3]) == 0.0  # the mean of the targets explains nothing
    assert r_squared([3, 2, 1], [1, 2, 3]) == -3.0  # worse than the mean is negative
    assert r_squared([5, 5], [5, 5]) == 1.0 and r_squared([4, 5], [5, 5]) == 0.0  # constant targets
    assert math.isnan(r_squared([1.0], [2.0]))  # one sample: undefined, as in scikit-learn
    with pytest.raises(ValueError, match="NaN"):
        r_squared([1, NAN], [1, 2])
    with pytest.raises(ValueError, match="one target"):
        r_squared([[1, 2]], [[1, 3]])
