"""The template-classifier model family: spec, prediction, and save/load with the library as a checked asset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from tasks.data.templates import TemplateLibrary, apply_retro, extract_templates, read_mapped_reactions
from tasks.metrics.smiles import canonicalize_smiles
from zoo.cards import parse_card
from zoo.errors import WeightsError
from zoo.io import sha256_file
from zoo.models.template_model import GENERAL_TEMPLATES_ASSET, TEMPLATES_ASSET
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


@pytest.fixture(scope="module")
def general_library(records) -> TemplateLibrary:
    return TemplateLibrary.from_extractions(extract_templates(records, progress=False, radius=0))


def test_general_templates_share_the_head_and_travel_as_a_second_checked_asset(library, general_library, records,
                                                                                tmp_path):
    """A model with radius-0 templates scores them after the radius-1 ones, trains on both targets of a row,
    predicts from either library, and saves and loads both libraries, each sha256-checked."""
    model = zoo.build({**spec(library), "num_general_templates": len(general_library),
                       "templates_per_item": len(library) + len(general_library)})
    with pytest.raises(ValueError, match="general one"):
        model.predict(["CCO"])
    with pytest.raises(ValueError, match="num_general_templates"):
        model.attach_library(library, library)
    model.attach_library(library, general_library)
    narrow = [e.template for e in extract_templates(records, progress=False)]
    broad = [e.template for e in extract_templates(records, progress=False, radius=0)]
    with pytest.raises(ValueError, match="exactly when the model has a general library"):
        fit_template_head(model, records, narrow, epochs=1, progress=False)
    fit = fit_template_head(model, records, narrow, general_templates=broad, general_weight=0.3, epochs=100,
                            batch_size=8, lr=0.01, progress=False)
    assert fit.examples == sum(t is not None for t in narrow)
    products = [r.product for r, t in zip(records, narrow, strict=True) if t is not None]
    probabilities = model(**model.processor("smiles", products).inputs).softmax(-1)
    assert probabilities.shape == (len(products), len(library) + len(general_library))
    general_share = probabilities[:, len(library):].sum(-1)
    assert 0.15 < general_share.mean() < 0.45, general_share  # about the 0.3 the targets gave it
    predictions = model.predict(products, top_k=3)
    truths = [canonicalize_smiles(r.reactants) for r, t in zip(records, narrow, strict=True) if t is not None]
    assert sum(c[0].smiles == truth for c, truth in zip(predictions, truths, strict=True) if c) >= 0.8 * len(truths)
    model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert set(config["assets"]) == {TEMPLATES_ASSET, GENERAL_TEMPLATES_ASSET}
    assert zoo.load(tmp_path / "model").predict(products) == model.predict(products)
    asset = tmp_path / "model" / GENERAL_TEMPLATES_ASSET
    asset.write_text(asset.read_text().replace(general_library.templates[0], general_library.templates[1], 1))
    with pytest.raises(WeightsError, match="sha256"):
        zoo.load(tmp_path / "model")


def test_a_recipe_with_general_templates_builds_both_libraries(library, general_library, tmp_path, monkeypatch):
    from zoo.spec import SpecError
    from zoo.training.templates import train_from_recipe

    monkeypatch.setenv("MODALZOO_CACHE", str(tmp_path / "cache"))
    settings = {"epochs": 2, "batch_size": 8, "progress": False, "general_weight": 0.5}
    with pytest.raises(SpecError, match=f"set num_general_templates to {len(general_library)}"):
        train_from_recipe(zoo.build({**spec(library), "num_general_templates": 2}), FIXTURE, settings, tmp_path / "run")
    model = train_from_recipe(zoo.build({**spec(library), "num_general_templates": len(general_library)}), FIXTURE,
                              settings, tmp_path / "run")
    assert model.general_library.templates == general_library.templates and model.general_library.classes
    fit = json.loads((tmp_path / "run" / "fit.json").read_text())
    assert fit["general_library"] == len(general_library) and fit["library"] == len(library)


def test_analogue_neighbours_are_the_most_similar_training_products_by_tanimoto(library, records):
    from zoo.models.analogues import AnalogueIndex

    model = zoo.build(spec(library))
    bits = [model.shape(r.product).bits for r in records]
    index = AnalogueIndex.build(bits, [model.shape(r.reactants).bits for r in records], [(0, -1)] * len(records), 256)
    for query in bits[:5]:
        near, similarity = index.neighbours(query, 3)
        brute = sorted((len(set(query) & set(b)) / len(set(query) | set(b)) for b in bits), reverse=True)[:3]
        assert similarity.tolist() == pytest.approx(brute)
        assert similarity[0] == pytest.approx(1.0)  # the product itself is in the index
    with pytest.raises(ValueError, match="lacks weights"):
        AnalogueIndex({k: v for k, v in index.tensors.items() if k != "weights"})
    with pytest.raises(ValueError, match=r"hidden_weight must have shape \(8, 16\)"):  # e.g. an older index's reranker
        AnalogueIndex({**index.tensors, "hidden_weight": torch.zeros(8, 8)})
    outside = index.tensors["product_bits"].clone()
    outside[0] = 256  # one bit past the fingerprint: would read outside its row
    with pytest.raises(ValueError, match=r"product bits leave \[0, 256\)"):
        AnalogueIndex({**index.tensors, "product_bits": outside})
    shifted = index.tensors["reactant_offsets"].clone()
    shifted[-1] += 1
    with pytest.raises(ValueError, match="reactant offsets do not partition"):
        AnalogueIndex({**index.tensors, "reactant_offsets": shifted})
    assert AnalogueIndex.from_bytes(index.to_bytes()).neighbours(bits[0], 3)[0].tolist() == index.neighbours(bits[0], 3)[0].tolist()


def test_an_analogue_reranked_model_fits_predicts_and_round_trips_its_index(library, general_library, records, tmp_path,
                                                                             monkeypatch):
    from zoo.spec import SpecError
    from zoo.training.templates import train_from_recipe

    with pytest.raises(SpecError, match="analogue_neighbours"):
        zoo.build({**spec(library, "forward"), "analogue_neighbours": 5})
    monkeypatch.setenv("MODALZOO_CACHE", str(tmp_path / "cache"))
    ranked = {**spec(library), "num_general_templates": len(general_library), "analogue_neighbours": 5}
    settings = {"epochs": 30, "batch_size": 8, "lr": 0.01, "progress": False}
    with pytest.raises(SpecError, match="validation_data"):
        train_from_recipe(zoo.build(ranked), FIXTURE, settings, tmp_path / "run")
    model = train_from_recipe(zoo.build(ranked), FIXTURE, settings, tmp_path / "run", validation=FIXTURE)
    fit = json.loads((tmp_path / "run" / "fit.json").read_text())["analogues"]
    assert fit["reactions"] + sum(fit["left_out"].values()) == 23 and fit["held_out"] == 21  # 2 rows unreadable
    assert fit["held_out_top1_after"] >= fit["held_out_top1_before"] - 0.05
    products = [r.product for r in records]
    predictions = model.predict(products, top_k=5)
    for candidates in predictions:
        assert len({c.smiles for c in candidates}) == len(candidates) and sum(c.score for c in candidates) <= 1 + 1e-6
    model.save_pretrained(tmp_path / "model")
    assert zoo.load(tmp_path / "model").predict(products, top_k=5) == predictions
    asset = tmp_path / "model" / "analogues.safetensors"
    asset.write_bytes(asset.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(WeightsError, match="sha256"):
        zoo.load(tmp_path / "model")


def test_a_template_rdchiral_cannot_apply_gives_no_outcome_and_the_others_still_count(retro, monkeypatch):
    """RDKit refuses some stereo rdchiral copies (a RuntimeError from deep inside rdchiralRun): that template gives
    the product nothing, and the product keeps the outcomes of its other templates."""
    from tasks.data import templates as module

    model, pairs = retro
    product = pairs[0][0].product
    broken = model.library.templates[pairs[0][1]]  # the product's own template
    others = {o for t in model.library.templates if t != broken for o in module.apply_retro(t, product)}
    real_run = module.rdchiralRun

    def refusing(reaction, reactants):
        if reaction is module._retro_reaction(broken):
            raise RuntimeError("Pre-condition Violation\n\tStereo atoms should be specified")
        return real_run(reaction, reactants)

    monkeypatch.setattr(module, "rdchiralRun", refusing)
    with pytest.raises(module.TemplateError, match="rdchiral error: applying"):
        module.apply_retro(broken, product)
    after = model.predict([product], top_k=50)[0]
    assert {c.smiles for c in after} == others  # every other template of the library is applied (templates_per_item)
