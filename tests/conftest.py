"""Fixtures shared by test modules (helpers they import live beside them: runtime_server, mock_openai)."""

import pytest


@pytest.fixture(scope="session")
def tiny_dir():
    """The runtime's tiny random checkpoint, written once per test process."""
    pytest.importorskip("torch")
    from runtime_server import tiny_checkpoint

    return tiny_checkpoint()
