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


def pytest_collection_modifyitems(items):
    """Tests marked `slow` run first (otherwise in their usual order): pytest-xdist (`-n 2` in
    pyproject's addopts) hands tests out in this order, so the long ones start at once on both workers
    and the short ones fill in around them, instead of one long test finishing alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # sort is stable
