"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test (tiny models run fastest that way, robustly on a
    shared machine, and bit-for-bit comparisons do not depend on thread scheduling); restores
    the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
