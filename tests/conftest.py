"""Fixtures shared by test modules (helpers they import live beside them: runtime_server, mock_openai)."""

import pytest


@pytest.fixture(scope="session")
def tiny_dir():
    """The runtime's tiny random checkpoint, written once per test process."""
    pytest.importorskip("torch")
    from runtime_server import tiny_checkpoint

    return tiny_checkpoint()


@pytest.fixture(autouse=True)
def own_run_registry(tmp_path_factory, monkeypatch):
    """Each test gets its own per-user run registry (XDG state dir): runs that other tests (or the
    user) started never show up in `status` or match `stop`."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
