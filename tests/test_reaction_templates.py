"""Reaction templates (tasks.data.templates): reading mapped reactions, rdchiral extraction with every failure
reported, the template library and its disk cache, and applying templates both ways.

The fixture is the header and first 20 rows of ../shared/data/uspto50k-mapped/train.tsv, then train row 9517
(a "reaction" whose product is its reactant, which rdchiral cannot template), then two malformed rows made by
hand: an empty mapped_reaction (line 23) and a line with 3 columns (line 24).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.data import templates
from tasks.data.templates import (
    MALFORMED_ROW,
    NO_REACTION_CENTRE,
    NOT_MAPPED,
    TIMEOUT,
    UNMAPPED_PRODUCT_ATOMS,
    UNPARSABLE,
    Extraction,
    Failure,
    TemplateError,
    TemplateLibrary,
    apply_forward,
    apply_retro,
    build_template_library,
    extract_template,
    extract_templates,
    extraction_settings,
    forward_template,
    library_cache_path,
    read_mapped_reactions,
    template_coverage,
)
from tasks.metrics.smiles import canonicalize_smiles

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "uspto50k_mapped_20.tsv"
NAME = FIXTURE.name


@pytest.fixture(scope="module")
def records() -> list:
    return list(read_mapped_reactions(FIXTURE))


@pytest.fixture(scope="module")
def extractions(records: list) -> list[Extraction]:
    return extract_templates(records, progress=False)


# --- reading -------------------------------------------------------------------------------------------


def test_reader_yields_every_line_and_reports_malformed_ones(records: list) -> None:
    assert [r.where for r in records] == [f"{NAME}:{n}" for n in range(2, 25)]
    good = records[:21]
    assert all(r.error is None and r.mapped_reaction and r.reaction_class in range(1, 11) for r in good)
    assert records[0].reaction_class == 1 and records[0].product.startswith("O=C1CC[C@H](CN2CCN(")
    assert records[23 - 2].error == Failure(
        NOT_MAPPED, "empty mapped_reaction; atom-map the reaction with rxnmapper first"
    )
    assert records[24 - 2].error == Failure(MALFORMED_ROW, "expected 5 tab-separated columns, got 3")


def test_reader_keeps_undecodable_and_bad_lines_as_failed_records(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_bytes(
        b"index\tclass\treaction\tmapped_reaction\tconfidence\n"
        b"0\t1\tCC\xff>>CC\t[CH3:1][CH3:2]>>[CH3:1][CH3:2]\t0.9\n"
        b"\n"
        b"2\tx\tCO>>C=O\t[CH3:1][OH:2]>>[CH2:1]=[O:2]\t0.9\n"
        b"3\t1\tCO\t[CH3:1][OH:2]>>[CH2:1]=[O:2]\t0.9\n"
        b"4\t\xc2\xb2\tCO>>C=O\t[CH3:1][OH:2]>>[CH2:1]=[O:2]\t0.9\n"  # class: superscript two, UTF-8
    )
    records = list(read_mapped_reactions(path))
    assert [r.where for r in records] == ["bad.tsv:2", "bad.tsv:3", "bad.tsv:4", "bad.tsv:5", "bad.tsv:6"]
    assert all(r.error is not None and r.error.reason == MALFORMED_ROW for r in records)
    assert "byte 0xff at column 7 is not valid UTF-8" in records[0].error.detail
    assert records[1].error.detail == "expected 5 tab-separated columns, got 1"
    assert records[2].error.detail == "class 'x' is not a non-negative integer"
    assert records[3].error.detail == "reaction 'CO' is not 'reactants>>product'"
    assert records[4].error.detail == "class '\u00b2' is not a non-negative integer"  # a digit int() refuses


def test_reader_refuses_a_file_without_the_needed_columns(tmp_path: Path) -> None:
    path = tmp_path / "plain.tsv"
    path.write_text("rxn\ty\nCC>>CC\t0.5\n")
    with pytest.raises(
        ValueError, match=r"plain.tsv:1: header lacks column\(s\) class, reaction, mapped_reaction"
    ):
        list(read_mapped_reactions(path))


# --- extraction ----------------------------------------------------------------------------------------


def test_every_row_is_templated_or_reported_with_its_line_and_reason(extractions: list[Extraction]) -> None:
    assert len(extractions) == 23
    assert all(e.template and ">>" in e.template and e.error is None for e in extractions[:20])
    failures = {e.where: e.error.reason for e in extractions if e.error is not None}
    assert failures == {
        f"{NAME}:22": NO_REACTION_CENTRE,
        f"{NAME}:23": NOT_MAPPED,
        f"{NAME}:24": MALFORMED_ROW,
    }
    library = TemplateLibrary.from_extractions(extractions)
    assert (library.stats.rows, library.stats.templated, library.stats.failed) == (23, 20, 3)
    assert library.stats.reasons == {NO_REACTION_CENTRE: 1, NOT_MAPPED: 1, MALFORMED_ROW: 1}
    assert [where for where, _ in library.stats.failures] == [f"{NAME}:22", f"{NAME}:23", f"{NAME}:24"]


def test_retro_template_reads_product_pattern_then_reactant_patterns(extractions: list[Extraction]) -> None:
    # Line 21 (train row 19) removes a phthalimide: the product has a free NH2, the reactants the imide.
    product_side, reactant_side = extractions[21 - 2].template.split(">>")
    assert product_side == "[C:2]-[NH2;D1;+0:1]"
    assert reactant_side.startswith("O=C1-[N;H0;D3;+0:1]")


def test_pool_extraction_matches_in_process_extraction_in_order(records: list, extractions: list) -> None:
    assert extract_templates(records, workers=2, chunksize=3, progress=False) == extractions


def test_extraction_failures_name_their_reason() -> None:
    with pytest.raises(TemplateError) as unparsable:
        extract_template("[CH3:1][C:2](=[O:3])[OH:4]>>[CH3:1][c:2]1=[O:3]")
    assert unparsable.value.failure.reason == UNPARSABLE
    with pytest.raises(TemplateError) as unmapped:
        extract_template("[CH3:1][OH:2].CCCCCCBr>>[CH3:1][O:2]CCCCCC")
    assert unmapped.value.failure == Failure(
        UNMAPPED_PRODUCT_ATOMS, "6 product atoms have no map number (limit 5)"
    )
    with pytest.raises(TemplateError) as malformed:
        extract_template("[CH3:1][OH:2]")
    assert malformed.value.failure.reason == MALFORMED_ROW


def test_slow_extractions_time_out_and_are_reported(records: list) -> None:
    timed_out = extract_templates(records[:3], progress=False, timeout_s=1e-6)
    assert [e.error for e in timed_out] == [Failure(TIMEOUT, "rdchiral took longer than 1e-06 s")] * 3


# --- applying templates --------------------------------------------------------------------------------


def test_own_template_gives_back_the_recorded_reactants(records: list, extractions: list[Extraction]) -> None:
    hits = [
        canonicalize_smiles(r.reactants) in apply_retro(e.template, r.product)
        for r, e in zip(records, extractions, strict=True)
        if e.template is not None
    ]
    assert len(hits) == 20
    assert sum(hits) >= 19  # 20 of 20 with rdchiral 1.1.0 and RDKit 2026.09


def test_forward_template_gives_back_the_recorded_product(
    records: list, extractions: list[Extraction]
) -> None:
    hits = [
        canonicalize_smiles(r.product) in apply_forward(forward_template(e.template), r.reactants)
        for r, e in zip(records, extractions, strict=True)
        if e.template is not None
    ]
    assert sum(hits) >= 19  # 20 of 20 with RDKit 2026.09


def test_applied_templates_give_canonical_distinct_sorted_sets() -> None:
    amide = extract_template(
        "[CH3:1][C:2](=[O:3])Cl.[CH3:4][CH2:5][NH2:6]>>[CH3:1][C:2](=[O:3])[NH:6][CH2:5][CH3:4]"
    )
    assert apply_retro(amide, "CC(=O)NCC") == ["CC(=O)Cl.CCN"]
    assert apply_retro(amide, "CCO") == []
    assert apply_forward(forward_template(amide), "CCN.ClC(C)=O") == ["CCNC(C)=O"]
    # the symmetric diamide gives the same reactant set by either amide bond: listed once
    assert apply_retro(amide, "CC(=O)NCCNC(C)=O") == ["CC(=O)Cl.CC(=O)NCCN"]
    assert apply_retro(amide, "CC(=O)NCC(C)NC(C)=O") == ["CC(=O)Cl.CC(=O)NC(C)CN", "CC(=O)Cl.CC(=O)NCC(C)N"]
    assert apply_forward(forward_template(amide), "NCC(C)N.ClC(C)=O") == ["CC(=O)NC(C)CN", "CC(=O)NCC(C)N"]
    with pytest.raises(ValueError, match="RDKit cannot parse the SMILES 'C1CC'"):
        apply_retro(amide, "C1CC")
    with pytest.raises(ValueError, match="pass valid reactants"):
        apply_forward(forward_template(amide), "")


def test_templates_whose_product_pattern_is_in_pieces_apply_to_one_molecule() -> None:
    # Both methyl esters hydrolysed: the product pattern is two acid groups ("A.B") of one molecule.
    both_esters = extract_template(
        "C[O:10][C:2](=[O:1])[CH2:3][CH2:4][CH2:5][CH2:6][CH2:7][C:8](=[O:9])[O:11]C"
        ">>[OH:10][C:2](=[O:1])[CH2:3][CH2:4][CH2:5][CH2:6][CH2:7][C:8](=[O:9])[OH:11]"
    )
    assert "." in both_esters.split(">>")[0]
    assert apply_retro(both_esters, "OC(=O)CCCC(=O)O") == ["COC(=O)CCCC(=O)OC"]
    assert apply_forward(forward_template(both_esters), "COC(=O)CCCC(=O)OC") == ["O=C(O)CCCC(=O)O"]


def test_forward_template_swaps_the_sides() -> None:
    assert (
        forward_template("[C:1]-[OH;D1;+0:2]>>[C:1]-[O;H0;D2;+0:2]-C")
        == "[C:1]-[O;H0;D2;+0:2]-C>>[C:1]-[OH;D1;+0:2]"
    )
    with pytest.raises(ValueError, match="is not a template"):
        forward_template("[C:1]>[C:1]")


def test_canonical_smiles_sorts_components_and_rejects_garbage() -> None:
    assert canonicalize_smiles("OCC.C(=O)Cl") == canonicalize_smiles("ClC=O.CCO") == "CCO.O=CCl"
    assert canonicalize_smiles("C1CC") is None
    assert canonicalize_smiles("") is None


# --- the library ---------------------------------------------------------------------------------------


def _toy_extractions() -> list[Extraction]:
    found = ["B", "A", "B", "C", "A", None]
    return [
        Extraction(f"toy.tsv:{n}", t, None if t else Failure(NO_REACTION_CENTRE, "nothing changed"))
        for n, t in enumerate(found, 2)
    ]


def test_library_orders_by_count_then_string_and_indexes() -> None:
    library = TemplateLibrary.from_extractions(_toy_extractions())
    assert library.templates == ("A", "B", "C") and library.counts == (2, 2, 1)
    assert [library.index(t) for t in ("A", "B", "C", "D")] == [0, 1, 2, None]
    assert (library.stats.rows, library.stats.templated, library.stats.distinct_templates) == (6, 5, 3)


def test_min_count_keeps_templates_seen_often_enough() -> None:
    library = TemplateLibrary.from_extractions(_toy_extractions(), min_count=2)
    assert library.templates == ("A", "B") and library.min_count == 2
    assert library.index("C") is None and library.stats.distinct_templates == 3
    assert TemplateLibrary.from_extractions(_toy_extractions()).with_min_count(3).templates == ()
    with pytest.raises(ValueError, match="min_count must be at least 1"):
        library.with_min_count(0)


def test_library_json_round_trip_and_atomic_save(tmp_path: Path, extractions: list[Extraction]) -> None:
    library = TemplateLibrary.from_extractions(
        extractions, settings=templates.extraction_settings(), sources=[(NAME, "ab" * 32)]
    )
    assert TemplateLibrary.from_json(library.to_json()) == library
    library.save(tmp_path / "lib.json")
    assert TemplateLibrary.load(tmp_path / "lib.json") == library
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.json"]  # no temporary file left behind
    with pytest.raises(ValueError, match="not a valid template library.*rebuild it"):
        TemplateLibrary.from_json(json.dumps({"format": "something-else"}))


def test_library_refuses_a_template_listed_twice() -> None:
    with pytest.raises(ValueError, match="holds a template twice"):
        TemplateLibrary(("A", "A"), (1, 1), TemplateLibrary.from_extractions([]).stats)


def test_coverage_counts_reactions_whose_template_is_in_the_library(extractions: list[Extraction]) -> None:
    full = TemplateLibrary.from_extractions(extractions)
    assert template_coverage(full, extractions) == templates.TemplateCoverage(23, 20, 20)
    frequent = full.with_min_count(2)  # one template is shared by two fixture reactions
    coverage = template_coverage(frequent, extractions)
    assert (coverage.covered, coverage.share) == (2, 2 / 23)


# --- the cache -----------------------------------------------------------------------------------------


def _refuse_extraction(*args: object, **kwargs: object) -> None:
    raise AssertionError("extract_templates ran although the library was cached")


def test_second_build_loads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_template_library(FIXTURE, tmp_path, progress=False)
    cached = library_cache_path(FIXTURE, tmp_path)
    assert cached.is_file() and cached.with_name(cached.name + ".sha256").is_file()
    assert len(first) == 19 and first.sources[0][0] == NAME
    monkeypatch.setattr(templates, "extract_templates", _refuse_extraction)
    assert build_template_library([FIXTURE], tmp_path, progress=False) == first
    assert build_template_library(FIXTURE, tmp_path, progress=False, min_count=2) == first.with_min_count(2)


def test_changed_input_or_settings_is_a_new_cache_entry(tmp_path: Path) -> None:
    copy = tmp_path / NAME
    copy.write_bytes(FIXTURE.read_bytes())
    before = library_cache_path(copy, tmp_path)
    assert library_cache_path(copy, tmp_path, timeout_s=5.0) != before
    copy.write_bytes(FIXTURE.read_bytes() + b"99\t1\tCO>>C=O\t\tnan\n")
    assert library_cache_path(copy, tmp_path) != before


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    first = build_template_library(FIXTURE, tmp_path, progress=False)
    cached = library_cache_path(FIXTURE, tmp_path)
    cached.write_bytes(cached.read_bytes().replace(b'", 2]', b'", 7]'))  # one count edited
    with pytest.warns(UserWarning, match="is corrupt .*sha256.*rebuilding it"):
        assert build_template_library(FIXTURE, tmp_path, progress=False) == first
    cached.with_name(cached.name + ".sha256").unlink()
    with pytest.warns(UserWarning, match="recorded in .*: none"):
        build_template_library(FIXTURE, tmp_path, progress=False)


# --- the benchmark -------------------------------------------------------------------------------------


def test_benchmark_prints_every_row(shared_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reaction_templates.py"), "--limit", "50",
         "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "USPTO-50K mapped: 50 train and 50 test reactions", result.stdout
    for label in ("extract_templates train, workers=1", "extract_templates train, workers=2",
                  "build_template_library, first call", "build_template_library, second call",
                  "distinct templates (all)", "distinct templates seen >= 2 times",
                  "test coverage: own template in train library",
                  "test own-template round trip, apply_retro", "test own-template round trip, apply_forward",
                  "apply_retro, ", "rdchiralRunText (baseline), ", "apply_forward, ", "radius 1", "radius 0",
                  "test coverage by any radius of 1,0"):  # fmt: skip
        assert any(line.startswith(label) for line in lines), f"row {label!r} missing from:\n{result.stdout}"
    assert lines[3] == "radius 1" and "(cold before)" in lines[4] and "(cache present before)" in lines[5], result.stdout
    second = lines.index("radius 0")
    assert "(cold before)" in lines[second + 1] and "(cache present before)" in lines[second + 2], result.stdout


def test_row_templates_are_cached_in_row_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = list(read_mapped_reactions(FIXTURE))
    library, rows = templates.templated_rows(FIXTURE, tmp_path, progress=False)
    assert rows == [e.template for e in extract_templates(records, progress=False)]
    assert all(library.index(t) is not None for t in rows if t is not None)
    monkeypatch.setattr(templates, "extract_templates", _refuse_extraction)
    assert templates.templated_rows(FIXTURE, tmp_path, progress=False) == (library, rows)
    monkeypatch.undo()
    rows_file = next(tmp_path.glob("*.rows.json"))
    rows_file.write_text(rows_file.read_text().replace("null", '"x"', 1) if "null" in rows_file.read_text() else "[]")
    with pytest.warns(UserWarning, match="row templates .* corrupt"):
        assert templates.templated_rows(FIXTURE, tmp_path, progress=False)[1] == rows


@pytest.fixture(scope="module")
def local_extractions(records: list) -> list[Extraction]:
    return extract_templates(records, progress=False, radius=0)


def test_radius_0_templates_give_back_the_reactants_and_are_more_general(
    records: list, extractions: list[Extraction], local_extractions: list[Extraction]
) -> None:
    """A radius-0 template keeps the changed atoms and leaving groups only: it reproduces its own reaction, and
    the library it gives is smaller than the radius-1 one (several reactions share a reaction centre)."""
    assert [e.error is None for e in local_extractions] == [e.error is None for e in extractions]
    hits = [
        canonicalize_smiles(r.reactants) in apply_retro(e.template, r.product)
        for r, e in zip(records, local_extractions, strict=True)
        if e.template is not None
    ]
    assert len(hits) == 20 and sum(hits) >= 19  # 20 of 20 with rdchiral 1.1.0 and RDKit 2026.09
    local = {e.template for e in local_extractions if e.template}
    assert len(local) < len({e.template for e in extractions if e.template})
    for narrow, broad in zip(extractions, local_extractions, strict=True):
        if narrow.template is not None:  # fewer atoms spelled out on each side
            assert len(broad.template) < len(narrow.template)


def test_the_radius_is_an_extraction_setting_with_its_own_cache_entry(tmp_path: Path) -> None:
    assert extraction_settings(radius=1)["special_groups"] and not extraction_settings(radius=0)["special_groups"]
    assert library_cache_path(FIXTURE, tmp_path, radius=0) != library_cache_path(FIXTURE, tmp_path)
    local = build_template_library(FIXTURE, tmp_path, progress=False, radius=0)
    assert local.settings["radius"] == 0 and library_cache_path(FIXTURE, tmp_path, radius=0).is_file()
    with pytest.raises(ValueError, match="radius must be one of"):
        extraction_settings(radius=2)
    with pytest.raises(ValueError, match="radius must be one of"):
        extract_template("CC>>CC", radius=3)
