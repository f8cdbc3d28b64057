"""Reaction top-k exact match (stereo-aware / -agnostic), validity and SMILES canonicalisation."""

from __future__ import annotations

import pytest

from tasks.metrics import (
    canonicalize_smiles,
    tanimoto_similarity,
    top1_validity,
    topk_exact_match_stereo_agnostic,
    topk_exact_match_stereo_aware,
)

L_ALANINE = "C[C@@H](C(=O)O)N"
D_ALANINE = "C[C@H](C(=O)O)N"


def test_canonicalisation_ignores_component_order_and_atom_order() -> None:
    assert canonicalize_smiles("CCO.CC(=O)O") == canonicalize_smiles("OC(C)=O.OCC")
    assert canonicalize_smiles("CCO.CCO") != canonicalize_smiles("CCO")  # duplicates are kept
    assert canonicalize_smiles("") is None
    assert canonicalize_smiles("C1CC") is None


def test_reordered_components_match() -> None:
    result = topk_exact_match_stereo_aware([["OC(C)=O.OCC"]], ["CCO.CC(=O)O"], ks=(1,))
    assert result.accuracy == {1: 1.0}


def test_stereo_variants() -> None:
    predictions = [[D_ALANINE], ["CC(N)C(=O)O"], [L_ALANINE]]
    targets = [L_ALANINE, L_ALANINE, L_ALANINE]
    aware = topk_exact_match_stereo_aware(predictions, targets, ks=(1,))
    agnostic = topk_exact_match_stereo_agnostic(predictions, targets, ks=(1,))
    assert aware.accuracy == {1: pytest.approx(1 / 3)}  # only the identical one
    assert agnostic.accuracy == {1: 1.0}  # enantiomer and stereo-free both match
    assert (aware.stereo, agnostic.stereo) == ("aware", "agnostic")


def test_topk_counts_invalid_predictions_as_wrong() -> None:
    predictions = [
        ["C1CC", "CCO", "CC(=O)O.OCC", "CCCC"],  # first hit at rank 3, invalid top-1
        ["C"],  # no hit
        [],  # nothing predicted
        ["N", "N", "N", "N", "N", "CC"],  # hit at rank 6
    ]
    targets = ["OCC.CC(=O)O", "CC", "CC", "CC"]
    result = topk_exact_match_stereo_aware(predictions, targets)
    assert result.accuracy == {1: 0.0, 3: 0.25, 5: 0.25, 10: 0.5}
    assert result.num_samples == 4
    assert result.invalid_top1 == 2  # the unparsable one and the empty list
    assert result.invalid_within_max_k == 1
    assert top1_validity(predictions) == 0.5


def test_reaction_input_errors() -> None:
    with pytest.raises(ValueError, match="predictions has 1 items but targets has 2"):
        topk_exact_match_stereo_aware([["CC"]], ["CC", "CCO"])
    with pytest.raises(ValueError, match="target 0 .* not a valid SMILES"):
        topk_exact_match_stereo_aware([["CC"]], ["C1CC"])
    with pytest.raises(TypeError, match="ranked list"):
        topk_exact_match_stereo_aware(["CC"], ["CC"])


def test_tanimoto_identity_and_invalid() -> None:
    for fingerprint in ("maccs", "rdk", "morgan2_2048"):
        assert tanimoto_similarity("c1ccccc1O", "Oc1ccccc1", fingerprint) == 1.0
        assert tanimoto_similarity("c1ccccc1O", "C1CC", fingerprint) is None
        assert 0.0 < tanimoto_similarity("c1ccccc1O", "c1ccccc1N", fingerprint) < 1.0
    with pytest.raises(ValueError, match="unknown fingerprint 'ecfp'"):
        tanimoto_similarity("C", "C", "ecfp")


def test_hostile_text_is_an_invalid_molecule_not_an_abort() -> None:
    from tasks.metrics.smiles import MAX_PARSE_LENGTH

    assert canonicalize_smiles("C\ud800C") is None  # RDKit cannot even receive a lone surrogate
    assert canonicalize_smiles("ＣＣＯ") is None  # full-width letters
    assert canonicalize_smiles("C" * (MAX_PARSE_LENGTH + 1)) is None
    assert canonicalize_smiles("C" * MAX_PARSE_LENGTH) is not None


def test_distinct_molecules_keeps_each_molecule_set_at_its_best_rank() -> None:
    from tasks.metrics import distinct_molecules

    ranked = ["OCC.CC(=O)Cl", "CCO.ClC(C)=O", "C1CC", "CCN", "C1CC", "NCC", "C[C@H](N)O", "C[C@@H](N)O"]
    # the second spelling of a reactant set, the repeated unparsable string and NCC (= CCN) go; the two
    # enantiomers are different molecules and both stay
    assert distinct_molecules(ranked) == ["OCC.CC(=O)Cl", "C1CC", "CCN", "C[C@H](N)O", "C[C@@H](N)O"]
    assert distinct_molecules([]) == []


def test_evaluation_scores_and_shows_distinct_molecules() -> None:
    """The scoring adapter de-duplicates a model's list before top-k: a duplicate cannot push the right answer
    out of the top k, and the list the results show is the de-duplicated one."""
    from zoo.evaluation.scoring import reaction_topk

    predictions = [["CCO", "OCC", "C(O)C", "CCN"], None, "CCO"]
    scores = reaction_topk(predictions, ["CCN", "CCO", "CCO"], ks=(1, 2))
    assert scores.answers == [["CCO", "CCN"], None, "CCO"]
    assert scores.summary["top2_exact_match_stereo_aware"] == 2 / 3  # CCN is second once duplicates are merged
    assert scores.summary["top1_exact_match_stereo_aware"] == 1 / 3
