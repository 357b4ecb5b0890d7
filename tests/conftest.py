"""Shared pytest hooks: `gpu`-marked tests are skipped, with the reason, where CUDA is absent."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: none is available on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
