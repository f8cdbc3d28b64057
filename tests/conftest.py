"""Shared fixtures: the path to ``../shared`` (skipping with a reason when absent), an offline Hub for a
module (``hub_offline``), and the Hypothesis profile (``HYPOTHESIS_PROFILE=ci`` in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI (`.ci/run`) replays the same derived examples on every run, so whether a submission lands never rests on
# the luck of the draw; local runs draw new examples each time and so keep finding new cases. A case found
# locally is added to its test with `@example`, which CI then runs too.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests that need it skip when it is missing."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DIR} (it exists only on project machines)")
    return SHARED_DIR


@pytest.fixture(scope="module")
def hub_offline():
    """HF_HUB_OFFLINE for a module whose files are all local (``pytestmark = pytest.mark.usefixtures("hub_offline")``):
    a Hub reference then fails at once instead of connecting."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield
