"""Suite-wide test settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run each test's torch ops on one thread, restoring the count afterwards.

    The tests use tiny models and patches, which gain nothing from intra-op threads; on a busy
    two-core machine (CI, or DataLoader workers beside the main process) extra threads make them
    many times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
