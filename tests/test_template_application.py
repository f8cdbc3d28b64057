"""Applying templates to many items at once: a pool of forked workers gives what this process gives, in order."""

from __future__ import annotations

import multiprocessing

import pytest

from tasks.data.template_application import apply_templates
from tasks.data.templates import apply_retro, extract_template

AMIDE = "[CH3:1][C:2](=[O:3])Cl.[CH3:4][CH2:5][NH2:6]>>[CH3:1][C:2](=[O:3])[NH:6][CH2:5][CH3:4]"
ESTER = "[CH3:1][C:2](=[O:3])O.[CH3:5][OH:6]>>[CH3:1][C:2](=[O:3])[O:6][CH3:5]"
PRODUCTS = ["CC(=O)NCC", "CCO", "CC(=O)NCCNC(C)=O", "CC(=O)OC", "CC(=O)NCC(C)NC(C)=O", "CCOC(C)=O"]


@pytest.fixture(scope="module")
def templates() -> list[str]:
    return [extract_template(AMIDE), extract_template(ESTER)]


def test_each_template_gives_what_apply_retro_gives_in_this_process_and_in_a_pool(templates) -> None:
    jobs = [(product, templates) for product in PRODUCTS]
    expected = [[apply_retro(t, product) for t in templates] for product in PRODUCTS]
    assert list(apply_templates("retro", jobs, workers=1)) == expected
    assert any(outcome for per_product in expected for outcome in per_product)  # the check sees real outcomes
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform: applying runs in this process only")
    assert list(apply_templates("retro", jobs, workers=2)) == expected


def test_forward_direction_swaps_the_template(templates) -> None:
    ((amide_products, ester_products),) = apply_templates("forward", [("CCN.ClC(C)=O", templates)])
    assert amide_products == ["CCNC(C)=O"] and ester_products == []


@pytest.mark.parametrize("workers", [1, 2])
def test_an_unparsable_item_raises_naming_it_at_its_place(templates, workers) -> None:
    applied = apply_templates("retro", [("CC(=O)NCC", templates), ("C1CC", templates)], workers=workers)
    assert next(applied)[0] == ["CC(=O)Cl.CCN"]
    with pytest.raises(ValueError, match="'C1CC'"):
        next(applied)


def test_bad_settings_are_refused(templates) -> None:
    with pytest.raises(ValueError, match="direction must be one of"):
        apply_templates("sideways", [("CCO", templates)])
    with pytest.raises(ValueError, match="workers must be at least 1"):
        apply_templates("retro", [("CCO", templates)], workers=0)
