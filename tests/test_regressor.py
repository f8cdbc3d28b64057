"""Yield regression with a predictor (regression head): the reaction-components encoder, the ``regress`` task kind with a
fixed row range, training (head, then fine-tuning) with every unusable row reported, and save/load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import zoo
from encoders.base import InvalidInputError
from encoders.smiles import SmilesTokenizer, build_vocab
from encoders.smiles.reaction_components import (
    ReactionComponentsConfig,
    ReactionComponentsEncoder,
    reaction_sides,
)
from tasks.config import TaskConfigError, load_task, rows_in_range
from tasks.data.manifest import read_rows
from tasks.metrics import mae, r_squared, rmse
from zoo.training.regression import RegressionSettings, fit_regressor, labelled_rows, train_from_recipe

FIXTURE = Path(__file__).parent / "fixtures" / "suzuki_miyaura_40.tsv"
TINY_ALBERT = {"model_type": "albert", "hidden_size": 32, "embedding_size": 16, "num_hidden_layers": 2,
               "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128}


def _fixture_reactions() -> list[str]:
    return [row.fields["rxn"] for row in read_rows("tsv", FIXTURE, "rxn")]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("vocab")
    molecules = [m for r in _fixture_reactions() for side in r.split(">") for m in side.split(".") if m]
    SmilesTokenizer(build_vocab(molecules + ["CCO", "CC(=O)O", "OCC"])).save(folder)
    return str(folder / "vocab.txt")


def regressor_spec(vocab_file: str, side_pooling: str = "sum") -> dict:
    config = {"model_config": TINY_ALBERT, "vocab_file": vocab_file, "max_length": 96, "pooling": "mean",
              "side_pooling": side_pooling}
    return {"type": "predictor", "modality": "smiles", "head": "regression", "targets": ["yield"], "hidden_sizes": [16],
            "dropout": 0.0,
            "encoder": {"type": "reaction-components", "config": config}}


@pytest.fixture(scope="module")
def encoder(vocab_file) -> ReactionComponentsEncoder:
    torch.manual_seed(0)
    config = ReactionComponentsConfig(model_config=TINY_ALBERT, vocab_file=vocab_file, max_length=96, pooling="mean")
    return ReactionComponentsEncoder(config).eval()


# -- the reaction-components encoder --------------------------------------------------------------------------


def test_each_distinct_molecule_is_encoded_once_and_sides_are_sums(encoder) -> None:
    from encoders.smiles.reaction_components import ReactionComponentsProcessor

    processor = ReactionComponentsProcessor(encoder.config)
    reactions = ["CCO.CC(=O)O>>CC(=O)OCC", "CC(=O)O.CCO.CCO>OCC>CC(=O)OCC"]
    batch = processor(reactions)
    assert batch.inputs["input_ids"].shape[0] == 4  # CCO, CC(=O)O, CC(=O)OCC, OCC: each once
    with torch.no_grad():
        together = encoder(**batch.inputs).pooled
        alone = torch.cat([encoder(**processor([r]).inputs).pooled for r in reactions])
        molecule = {m: encoder.molecule(**processor.molecules([m]).inputs).pooled[0] for m in ("CCO", "CC(=O)O", "CC(=O)OCC", "OCC")}
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    width = encoder.molecule.hidden_size
    second = together[1].view(3, width)
    torch.testing.assert_close(second[0], molecule["CC(=O)O"] + 2 * molecule["CCO"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second[1], molecule["OCC"], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(together[0].view(3, width)[1]) == 0  # no reagents: a zero side
    assert encoder.hidden_size == 3 * width and together.shape == (2, 3 * width)


def test_mean_side_pooling_divides_by_the_molecule_count(vocab_file) -> None:
    torch.manual_seed(0)
    summed = ReactionComponentsEncoder(
        ReactionComponentsConfig(model_config=TINY_ALBERT, vocab_file=vocab_file, max_length=96, pooling="mean")).eval()
    averaged = ReactionComponentsEncoder(
        ReactionComponentsConfig(model_config=TINY_ALBERT, vocab_file=vocab_file, max_length=96, pooling="mean", side_pooling="mean")).eval()
    averaged.load_state_dict(summed.state_dict())
    from encoders.smiles.reaction_components import ReactionComponentsProcessor

    inputs = ReactionComponentsProcessor(summed.config)(["CCO.CCO.CC(=O)O>>CC(=O)OCC"]).inputs
    with torch.no_grad():
        reactants_sum = summed(**inputs).pooled.view(3, -1)[0]
        reactants_mean = averaged(**inputs).pooled.view(3, -1)[0]
    torch.testing.assert_close(reactants_mean * 3, reactants_sum, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("reaction", "message"),
    [
        ("CCO", "has 0 '>'"),
        ("CCO>CC>CC>C", "has 3 '>'"),
        (">>CCO", "has no reactants"),
        ("CCO>>", "has no products"),
        ("CCO..CC>>CC", "empty molecule among its reactants"),
        ("CCO>>C$%%", "products molecule"),
        ("", "pass a reaction SMILES"),
        (None, "pass a reaction SMILES"),
    ],
)
def test_a_bad_reaction_is_refused_naming_its_item(reaction, message) -> None:
    with pytest.raises(InvalidInputError, match=message) as error:
        reaction_sides(reaction, index=7)
    assert "reaction item 7" in str(error.value)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="CNOc1()=#.>[]@+-HBrl~ ", max_size=40))
def test_any_text_either_parses_or_is_refused_with_its_item_named(text: str) -> None:
    try:
        sides = reaction_sides(text, index=3)
    except InvalidInputError as error:
        assert "reaction item 3" in str(error)
    else:
        assert sides[0] and sides[2] and all(m for side in sides for m in side)


# -- the task: a fixed row range, numeric references ---------------------------------------------------------


def test_row_range_picks_the_published_split_and_is_checked() -> None:
    rows = read_rows("tsv", FIXTURE, "rxn")
    test = rows_in_range(rows, [0.7, 1.0])
    assert len(test) == 40 - int(0.7 * 40) and [r.index for r in test] == list(range(len(test)))
    assert test[0].source == rows[28].source and test[0].fields == rows[28].fields
    assert rows_in_range(rows, None) is rows
    for bad in ([0.7], [0.9, 0.1], [-0.1, 0.5], [0.0, 1.5], "0.7", [True, 1.0]):
        with pytest.raises(TaskConfigError, match="row_range"):
            load_task("yield-suzuki", row_range=bad)


def test_the_suzuki_task_scores_yield_berts_test_rows(shared_dir) -> None:
    """Yield-BERT: ``train_df = df.iloc[:int(0.7 * len(df))]``, the rest is the test set."""
    path = shared_dir / "data" / "yields" / "suzuki_miyaura_random_split_0.tsv"
    rows = read_rows("tsv", path, "rxn")
    test = rows_in_range(rows, load_task("yield-suzuki").row_range)
    assert (len(rows), len(test)) == (5760, 1728)
    assert test[0].fields == rows[4032].fields


# -- the model: training, evaluation, save and load ----------------------------------------------------------


def _synthetic_rows(n: int = 60) -> list:
    """Yields that depend on which base is in the reaction: learnable, so a fit that does not learn fails."""
    from tasks.data.manifest import Row

    bases = {"CCO": 0.1, "CC(=O)O": 0.5, "OCC": 0.9}
    rows = []
    for i in range(n):
        base = list(bases)[i % 3]
        rows.append(Row(i, {"item": f"{base}.c1ccccc1Br>>c1ccccc1{'C' * (1 + i % 2)}", "target": bases[base] + 0.01 * (i % 2)},
                        source=f"synthetic:{i + 1}"))
    return rows


def test_the_head_learns_and_a_bad_row_is_reported(vocab_file) -> None:
    from tasks.data.manifest import Row

    rows = _synthetic_rows()
    model = zoo.build(regressor_spec(vocab_file))
    bad = Row(99, {"item": "CCO>>C$%%", "target": 0.3}, source="synthetic:100")
    fit = fit_regressor(model, [*rows, bad], RegressionSettings(head_epochs=200, batch_size=16, head_lr=3e-3), progress=False)
    assert fit.rows_used == 60 and list(fit.failed_rows) == ["synthetic:100"]
    assert "reaction item" in fit.failed_rows["synthetic:100"]
    targets = [r.fields["target"] for r in rows]
    assert r_squared([v[0] for v in model.predict([r.fields["item"] for r in rows])], targets) > 0.9
    assert model.target_mean.item() == pytest.approx(sum(targets) / len(targets))


def test_fine_tuning_moves_the_encoder_and_is_seeded(vocab_file) -> None:
    settings = RegressionSettings(head_epochs=5, finetune_epochs=2, batch_size=16, finetune_batch_size=32,
                                  encoder_lr=1e-4)
    start = zoo.build(regressor_spec(vocab_file)).state_dict()
    fits, states = [], []
    for _ in range(2):
        model = zoo.build(regressor_spec(vocab_file))
        fits.append(fit_regressor(model, _synthetic_rows(), settings, progress=False))
        states.append(model.state_dict())
    assert fits[0] == fits[1] and fits[0].finetune_loss is not None
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    moved = [k for k in start if k.startswith("encoder.") and not torch.equal(start[k], states[0][k])]
    assert moved, "fine-tuning left every encoder weight where it was"


def test_training_rows_without_a_number_or_an_item_are_listed_not_dropped() -> None:
    rows = read_rows("tsv", FIXTURE, "rxn")
    rows[0].fields["y"] = "n/a"
    rows[1].fields["rxn"] = ""
    rows[2].fields["y"] = "nan"
    good, failed = labelled_rows(rows, "rxn", "y")
    assert len(good) == 37 and len(failed) == 3
    assert set(failed) == {rows[0].source, rows[1].source, rows[2].source}
    assert "finite number" in failed[rows[0].source] and "non-empty" in failed[rows[1].source]


def test_save_and_load_give_the_same_values_in_data_units(vocab_file, tmp_path) -> None:
    model = zoo.build(regressor_spec(vocab_file))
    fit_regressor(model, _synthetic_rows(30), RegressionSettings(head_epochs=3, batch_size=8), progress=False)
    reactions = _fixture_reactions()[:5]
    loaded = zoo.load(model.save_pretrained(tmp_path / "yield"))
    assert loaded.target_std.item() == model.target_std.item() != 1.0
    assert loaded.predict(reactions) == model.predict(reactions)


def test_evaluation_counts_a_bad_row_and_equals_the_pure_metrics(vocab_file, tmp_path) -> None:
    model = zoo.build(regressor_spec(vocab_file))
    fit_regressor(model, _synthetic_rows(30), RegressionSettings(head_epochs=3, batch_size=8), progress=False)
    data = tmp_path / "yields.tsv"
    lines = FIXTURE.read_text().splitlines()
    lines[35] = "\t".join([lines[35].split("\t")[0], "CCO>>C$%%", "0.5"])  # an unparsable reaction in the test rows
    lines[36] = "\t".join([*lines[36].split("\t")[:2], "lots"])  # a yield that is not a number
    data.write_text("\n".join(lines) + "\n")
    results = zoo.evaluate(model, "yield-suzuki", data, batch_size=4, progress=False, output_dir=tmp_path / "out")
    assert results["num_rows"] == 12 and results["num_failed"] == 2
    failures = {f["source"]: f for f in results["failures"]}
    assert "reaction item" in failures["yields.tsv:36"]["error"] and "finite number" in failures["yields.tsv:37"]["error"]
    scored = [r for r in results["rows"] if r["error"] is None]
    predictions, references = [r["prediction"] for r in scored], [float(r["reference"]) for r in scored]
    metrics = results["metrics"]
    assert metrics["r2"] == pytest.approx(r_squared(predictions, references))
    assert metrics["mae"] == pytest.approx(mae(predictions, references))
    assert metrics["rmse"] == pytest.approx(rmse(predictions, references))
    assert metrics["scored_fraction"] == pytest.approx(10 / 12)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["metrics"] == metrics
    assert all(0.0 <= r["score"] <= 1.0 for r in results["rows"])
    assert not any(math.isnan(v) for v in metrics.values())


def test_a_recipe_may_not_train_on_the_rows_the_task_scores(vocab_file, tmp_path) -> None:
    from zoo.spec import SpecError

    model = zoo.build(regressor_spec(vocab_file))
    with pytest.raises(SpecError, match="overlaps"):
        train_from_recipe(model, load_task("yield-suzuki"), FIXTURE, {"train_range": [0.0, 0.8]}, tmp_path)
    with pytest.raises(SpecError, match="unknown setting"):
        train_from_recipe(model, load_task("yield-suzuki"), FIXTURE, {"epochs": 3}, tmp_path)
    train_from_recipe(model, load_task("yield-suzuki"), FIXTURE,
                      {"train_range": [0.0, 0.7], "head_epochs": 2, "progress": False}, tmp_path)
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["rows_read"] == 28 and fit["rows_used"] == 28 and fit["failed_rows"] == {}
