"""The SMILES attacks of issue 14: one bad string never costs a batch, and hostile text is refused early.

A zero-width space or a lone surrogate used to raise out of ``featurize_many`` (losing the whole batch);
whitespace, full-width letters and NUL were silently cut off (``'CCO CC'`` gave ethanol); and long hostile
strings took quadratic time. Each attack here must become that item's own error, naming the position (or
the length limit), while its neighbours featurize exactly as they do alone. The featurizer and the
tokenizer refuse the same text with the same reason.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_geometric.data import Data

from encoders.base import InvalidInputError
from encoders.molecule import (
    MAX_SMILES_LENGTH,
    InvalidMoleculeError,
    featurize_many,
    reaction_to_graphs,
    smiles_to_graph,
)
from encoders.smiles import tokenize_smiles
from encoders.smiles_text import smiles_text_problem

# (attack, what the message must say about it)
CHARACTER_ATTACKS = [
    ("CC\u200bO", "non-ASCII character '\\u200b' (U+200B) at position 2"),  # zero-width space
    ("CC\ud800O", "non-ASCII character '\\ud800' (U+D800) at position 2"),  # lone surrogate
    ("CCO CC", "whitespace ' ' at position 3"),
    ("CCO\tCC", "whitespace '\\t' at position 3"),
    ("CCO\n", "whitespace '\\n' at position 3"),
    ("CC\uff2f", "non-ASCII character 'Ｏ' (U+FF2F) at position 2"),  # full-width O
    ("CC\x00O", "control character '\\x00' at position 2"),  # NUL
    ("[C\u200bH4]", "non-ASCII character '\\u200b' (U+200B) at position 2"),  # hidden inside a bracket atom
    ("[NH4 +]", "whitespace ' ' at position 4"),
]
HOSTILE_LENGTH = 100_000
HOSTILE_SHAPES = {"[": "[" * HOSTILE_LENGTH, "C": "C" * HOSTILE_LENGTH, "C(": "C(" * (HOSTILE_LENGTH // 2)}
NEIGHBOURS = ["CCO", "c1ccccc1", "C[C@@H](N)C(=O)O"]


def assert_same_graph(graph: Data | None, expected: Data) -> None:
    assert graph is not None
    for key in ("x", "edge_index", "edge_attr"):
        assert torch.equal(graph[key], expected[key]), key
    assert graph.smiles == expected.smiles and graph.num_nodes == expected.num_nodes


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("attack", "reason"), CHARACTER_ATTACKS)
def test_bad_character_fails_only_its_item(attack: str, reason: str, workers: int) -> None:
    result = featurize_many([NEIGHBOURS[0], attack, *NEIGHBOURS[1:]], workers=workers)
    assert len(result) == 4 and result[1] is None
    assert [(e.index, e.input) for e in result.errors] == [(1, attack)]
    assert reason in result.errors[0].message and repr(attack) in result.errors[0].message
    for graph, text in zip([result[0], *result.graphs[2:]], NEIGHBOURS, strict=True):
        assert_same_graph(graph, smiles_to_graph(text))


@pytest.mark.parametrize(("attack", "reason"), CHARACTER_ATTACKS)
def test_featurizer_and_tokenizer_refuse_alike(attack: str, reason: str) -> None:
    """Both raise an InvalidInputError carrying the one shared reason, naming the character's position."""
    problem = smiles_text_problem(attack)
    assert problem is not None and reason in problem
    with pytest.raises(InvalidMoleculeError) as featurizer:
        smiles_to_graph(attack)
    with pytest.raises(InvalidInputError) as tokenizer:
        tokenize_smiles(attack)
    assert problem in str(featurizer.value) and problem in str(tokenizer.value)


@pytest.mark.parametrize("shape", HOSTILE_SHAPES)
def test_hostile_long_text_is_refused_with_the_limit(shape: str) -> None:
    text = HOSTILE_SHAPES[shape]
    limit = f"{HOSTILE_LENGTH:,} characters, over the limit of {MAX_SMILES_LENGTH:,}"
    with pytest.raises(InvalidMoleculeError, match=limit) as info:
        smiles_to_graph(text)
    assert len(str(info.value)) < 1_000  # the input is quoted cut short, not echoed whole
    result = featurize_many([text, "CCO"], workers=1)
    assert result[0] is None and limit in result.errors[0].message and len(result.errors[0].message) < 1_000
    assert_same_graph(result[1], smiles_to_graph("CCO"))
    with pytest.raises(InvalidMoleculeError, match=limit):
        reaction_to_graphs(f"{text}>>CCO")


def test_length_limit_is_configurable() -> None:
    long_chain = "C" * (MAX_SMILES_LENGTH + 1)
    with pytest.raises(InvalidMoleculeError, match="over the limit"):
        smiles_to_graph(long_chain)
    for max_length in (MAX_SMILES_LENGTH + 1, None):
        graph = smiles_to_graph(long_chain, max_length=max_length)
        assert graph.num_nodes == len(long_chain) and graph.edge_index.shape[1] == 2 * (len(long_chain) - 1)
        assert_same_graph(featurize_many([long_chain], max_length=max_length)[0], graph)
    assert "4 characters, over the limit of 3" in featurize_many(["CCCC"], max_length=3).errors[0].message
    with pytest.raises(InvalidMoleculeError, match="over the limit of 3"):
        reaction_to_graphs("CCCC>>C", max_length=3)


def test_error_message_stays_short_when_rdkit_logs_one_line_per_branch() -> None:
    """RDKit logs an echo of the input per unclosed branch (quadratic in the length); the message names the
    first problems and counts the rest."""
    with pytest.raises(InvalidMoleculeError) as info:
        smiles_to_graph("C(" * 1_500)
    message = str(info.value)
    assert "extra open parentheses" in message and "more)" in message and len(message) < 1_000


@pytest.mark.parametrize("shape", ["[", "C", "C("])
def test_hostile_shapes_under_the_limit_give_rdkit_verdict(shape: str) -> None:
    """Just under the limit the text is parsed; the chain (past the dense-matrix and bond-index limits, so
    on the per-atom paths) is featurized whole, the others fail with RDKit's reason."""
    text = (shape * MAX_SMILES_LENGTH)[:MAX_SMILES_LENGTH]
    if shape == "C":
        graph = featurize_many([text])[0]
        assert graph is not None and graph.num_nodes == MAX_SMILES_LENGTH
        assert_same_graph(graph, smiles_to_graph(text))
    else:
        result = featurize_many([text])
        assert result[0] is None and "syntax error" in result.errors[0].message


ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates, controls, anything
VALID = st.sampled_from([*NEIGHBOURS, "[Na+].[Cl-]", "F/C=C/F", "C" * 2100])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ANY_TEXT, VALID), max_size=6))
def test_featurize_many_answers_every_item_in_order(items: list[str]) -> None:
    """One entry per input, in order, no exception; each item's outcome is the one it gets alone."""
    result = featurize_many(items)
    assert len(result) == len(items)
    assert [e.index for e in result.errors] == [i for i, graph in enumerate(result) if graph is None]
    errors = {e.index: e.message for e in result.errors}
    for index, text in enumerate(items):
        alone = featurize_many([text])
        if alone[0] is None:
            assert errors[index] == alone.errors[0].message
        else:
            assert_same_graph(result[index], alone[0])
