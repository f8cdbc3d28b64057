"""The template-classifier model family: spec, prediction, and save/load with the library as a checked asset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zoo
from tasks.data.templates import TemplateLibrary, apply_retro, extract_templates, read_mapped_reactions
from tasks.metrics.smiles import canonicalize_smiles
from zoo.cards import parse_card
from zoo.errors import WeightsError
from zoo.io import sha256_file
from zoo.models.template_model import TEMPLATES_ASSET
from zoo.training.templates import fit_template_head

FIXTURE = Path(__file__).parent / "fixtures" / "uspto50k_mapped_20.tsv"


@pytest.fixture(scope="module")
def records():
    return [r for r in read_mapped_reactions(FIXTURE) if r.error is None]


@pytest.fixture(scope="module")
def library(records) -> TemplateLibrary:
    return TemplateLibrary.from_extractions(extract_templates(records, progress=False))


def spec(library: TemplateLibrary, direction: str = "retro") -> dict:
    return {"type": "template-classifier", "modality": "smiles", "direction": direction,
            "encoder": {"type": "fingerprint", "config": {"radius": 2, "size": 256}},
            "num_templates": len(library), "hidden_sizes": [32], "templates_per_item": len(library)}


def trained(library: TemplateLibrary, records, direction: str = "retro"):
    """A model fitted to the fixture (each input -> its own template), so predictions are meaningful."""
    model = zoo.build(spec(library, direction))
    model.attach_library(library)
    templates = [e.template for e in extract_templates(records, progress=False)]
    fit = fit_template_head(model, records, templates, epochs=100, batch_size=8, lr=0.01, progress=False)
    assert fit.examples + sum(fit.skipped.values()) == len(records)
    pairs = [(r, library.index(t)) for r, t in zip(records, templates, strict=True) if t is not None]
    return model, pairs


@pytest.fixture(scope="module")
def retro(library, records):
    return trained(library, records)


def test_retro_predictions_are_ranked_distinct_and_recover_the_reactants(retro):
    model, pairs = retro
    predictions = model.predict([r.product for r, _ in pairs], top_k=5)
    hits = 0
    for (record, _), candidates in zip(pairs, predictions, strict=True):
        smiles = [c.smiles for c in candidates]
        assert len(smiles) == len(set(smiles)) <= 5  # duplicates merged
        assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
        hits += bool(smiles) and smiles[0] == canonicalize_smiles(record.reactants)
    assert hits >= len(pairs) * 0.8


def test_forward_direction_predicts_products(library, records):
    model, pairs = trained(library, records, "forward")
    predictions = model.predict([r.reactants for r, _ in pairs], top_k=3)
    hits = sum(bool(c) and c[0].smiles == canonicalize_smiles(r.product) for (r, _), c in zip(pairs, predictions, strict=True))
    assert hits >= len(pairs) * 0.6


def test_save_and_load_give_the_same_predictions_and_the_library_is_checked(library, retro, tmp_path):
    model, pairs = retro
    model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["assets"] == {TEMPLATES_ASSET: sha256_file(tmp_path / "model" / TEMPLATES_ASSET)}
    loaded = zoo.load(tmp_path / "model")
    products = [r.product for r, _ in pairs]
    assert loaded.predict(products) == model.predict(products)
    asset = tmp_path / "model" / TEMPLATES_ASSET
    asset.write_text(asset.read_text().replace(library.templates[0], library.templates[1], 1))
    with pytest.raises(WeightsError, match="sha256"):
        zoo.load(tmp_path / "model")


def test_a_card_takes_the_library_as_a_checked_asset(library, retro, tmp_path):
    model, pairs = retro
    model.save_pretrained(tmp_path / "model")
    folder = tmp_path / "model"
    meta = {"name": "retro-test", "description": "d", "license": "mit", "spec": spec(library), "weights": [
        {"file": "model.safetensors", "sha256": sha256_file(folder / "model.safetensors"), "bundled": True},
        {"file": TEMPLATES_ASSET, "sha256": sha256_file(folder / TEMPLATES_ASSET), "bundled": True,
         "format": "asset", "asset": TEMPLATES_ASSET}]}
    card = parse_card("---\n" + json.dumps(meta) + "\n---\n", "retro-test.md")
    loaded = zoo.load(card, weights_dir=folder)
    assert loaded.predict([pairs[0][0].product]) == model.predict([pairs[0][0].product])
    broken = dict(meta, weights=[meta["weights"][0], {**meta["weights"][1], "sha256": "0" * 64}])
    with pytest.raises(WeightsError, match="sha256"):
        zoo.load(parse_card("---\n" + json.dumps(broken) + "\n---\n", "retro-test.md"), weights_dir=folder)


def test_a_library_of_the_wrong_size_and_a_missing_library_are_errors(library):
    model = zoo.build({**spec(library), "num_templates": len(library) + 1})
    with pytest.raises(ValueError, match="num_templates"):
        model.attach_library(library)
    with pytest.raises(ValueError, match="no template library"):
        model.predict(["CCO"])


def test_an_invalid_product_is_named(retro):
    model, _ = retro
    with pytest.raises(ValueError, match="item 1"):
        model.predict(["CCO", "C1CC"])


def test_zoo_eval_scores_a_template_model_and_counts_a_bad_row(retro, tmp_path):
    model, pairs = retro
    data = tmp_path / "uspto"
    data.mkdir()
    products = [r.product for r, _ in pairs] + ["C1CC"]  # the last product does not parse
    reactants = [r.reactants for r, _ in pairs] + ["CCO"]
    (data / "src-test.txt").write_text("".join(f"<RX_1> {' '.join(p)}\n" for p in products))
    (data / "tgt-test.txt").write_text("".join(f"{' '.join(r)}\n" for r in reactants))
    results = zoo.evaluate(model, "retro-template-uspto50k", data / "src-test.txt", output_dir=tmp_path / "out",
                           progress=False, report=False)
    assert results["num_rows"] == len(products)
    (failure,) = results["failures"]
    assert "src-test.txt:" in json.dumps(failure) and "C1CC" in json.dumps(failure)
    expected = model.predict([r.product for r, _ in pairs], top_k=10)
    top1 = sum(bool(c) and c[0].smiles == canonicalize_smiles(r.reactants) for (r, _), c in zip(pairs, expected, strict=True))
    assert results["metrics"]["top1_exact_match_stereo_aware"] == pytest.approx(top1 / len(products))


def test_fit_counts_every_reaction_it_leaves_out(library, records):
    model = zoo.build(spec(library))
    model.attach_library(library)
    templates = [e.template for e in extract_templates(records, progress=False)]
    unknown = "[C:1]>>[N:1]"  # a template the library does not hold
    bad = type(records[0])(records[0].where, 1, "CC>>C1CC", "", None)  # an input RDKit cannot parse
    fit = fit_template_head(model, [*records, records[0], bad, records[1]], [*templates, unknown, templates[0], None],
                            epochs=1, progress=False)
    untemplated = templates.count(None)
    assert fit.skipped == {"template not in the library": 1, "invalid input molecule": 1, "no template": untemplated + 1}
    assert fit.examples == len(records) - untemplated


def test_a_template_head_recipe_checks_the_library_size_and_reports_its_fit(library, tmp_path, monkeypatch):
    from zoo.spec import SpecError
    from zoo.training.templates import train_from_recipe

    monkeypatch.setenv("MODALZOO_CACHE", str(tmp_path / "cache"))
    settings = {"epochs": 2, "batch_size": 8, "progress": False}
    with pytest.raises(SpecError, match=f"set num_templates to {len(library)}"):
        train_from_recipe(zoo.build({**spec(library), "num_templates": 3}), FIXTURE, settings, tmp_path / "run")
    with pytest.raises(SpecError, match="unknown setting"):
        train_from_recipe(zoo.build(spec(library)), FIXTURE, {"epochz": 2}, tmp_path / "run")
    model = train_from_recipe(zoo.build(spec(library)), FIXTURE, settings, tmp_path / "run")
    assert model.library.templates == library.templates and list((tmp_path / "cache" / "templates").glob("*.rows.json"))
    fit = json.loads((tmp_path / "run" / "fit.json").read_text())
    assert fit["library"] == len(library) and fit["examples"] + sum(fit["skipped"].values()) == 23


def test_the_library_records_classes_and_round_trips_them(library, records):
    templates = [e.template for e in extract_templates(records, progress=False)]
    classed = library.with_classes(templates, [r.reaction_class for r in records])
    for template, reaction_class in zip(templates, (r.reaction_class for r in records), strict=True):
        if template is not None:
            assert reaction_class in classed.classes[classed.index(template)]
    assert TemplateLibrary.from_json(classed.to_json()) == classed
    assert TemplateLibrary.from_json(library.to_json()).classes == ()  # a library without classes stays so
    assert classed.with_min_count(2).classes == tuple(
        k for k, c in zip(classed.classes, classed.counts, strict=True) if c >= 2)
    with pytest.raises(ValueError, match="records no reaction classes"):
        library.allows(1)
    with pytest.raises(ValueError, match="no template of the library was seen with reaction class 99"):
        classed.allows(99)


def test_a_given_class_restricts_the_templates_and_zoo_eval_passes_it(library, records, tmp_path):
    model, pairs = trained(library, records)
    templates = [e.template for e in extract_templates(records, progress=False)]
    model.attach_library(library.with_classes(templates, [r.reaction_class for r in records]))
    products = [r.product for r, _ in pairs]
    given = [r.reaction_class for r, _ in pairs]
    unknown_class = model.predict(products, top_k=10)
    with_class = model.predict(products, top_k=10, reaction_classes=given)
    for (record, _), candidates in zip(pairs, with_class, strict=True):
        allowed = [t for t, ok in zip(model.library.templates, model.library.allows(record.reaction_class), strict=True) if ok]
        assert len(allowed) < len(model.library)  # the fixture's classes do restrict
        reachable = {o for t in allowed for o in apply_retro(t, record.product)}
        assert candidates and {c.smiles for c in candidates} <= reachable  # only the class's templates apply
        assert sum(c.score for c in candidates) <= 1 + 1e-6
    assert with_class != unknown_class
    with pytest.raises(ValueError, match="one per item"):
        model.predict(products, reaction_classes=given[:-1])
    data = tmp_path / "uspto"
    data.mkdir()
    (data / "src-test.txt").write_text("".join(f"<RX_{c}> {' '.join(p)}\n" for p, c in zip(products, given, strict=True)))
    (data / "tgt-test.txt").write_text("".join(f"{' '.join(r.reactants)}\n" for r, _ in pairs))
    results = zoo.evaluate(model, "retro-template-uspto50k-class", data / "src-test.txt", progress=False, report=False)
    assert results["num_failed"] == 0
    top1 = sum(bool(c) and c[0].smiles == canonicalize_smiles(r.reactants) for (r, _), c in zip(pairs, with_class, strict=True))
    assert results["metrics"]["top1_exact_match_stereo_aware"] == pytest.approx(top1 / len(pairs))
