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


@pytest.fixture(autouse=True)
def _sigchld_as_it_was():
    """A test that starts DataLoader workers leaves torch's Python SIGCHLD handler installed for
    the rest of the session. Together with OpenVINO (int8), whose threads move the signal stack,
    the next child process's exit then crashed pytest itself (SIGSEGV from the kernel, delivering
    SIGCHLD on a stack that was gone). Each test gets the handler it started with."""
    import signal

    before = signal.getsignal(signal.SIGCHLD)
    yield
    if signal.getsignal(signal.SIGCHLD) is not before:
        signal.signal(signal.SIGCHLD, before)
