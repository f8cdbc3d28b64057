"""Models the security tests share: built once per test module, small and untrained."""

from __future__ import annotations

import pytest

import zoo
from tests.helpers import dual_encoder_spec


@pytest.fixture(scope="module")
def clip():
    """A tiny CLIP-style dual encoder."""
    return zoo.build(dual_encoder_spec()).eval()


@pytest.fixture(scope="module")
def vlm():
    """The tiny test VLM card, freshly initialised."""
    return zoo.build("tiny-test-vlm").eval()
