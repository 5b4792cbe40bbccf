"""Fixtures for the ops tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cpu_kernels():
    """Builds (or loads from the cache) the C++ kernels once; fails loudly if they cannot be built."""
    from ops import _extension

    module = _extension.load_kernels("cpu")
    assert module is not None, "the C++ CPU kernels failed to build (set PERCEPTION_OPS_VERBOSE=1)"
    return module
