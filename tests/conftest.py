"""Fixtures shared by test modules (helpers they import live beside them: runtime_server, mock_openai)."""

import fcntl
import os

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


@pytest.fixture(scope="session")
def _solo_lock(tmp_path_factory):
    """A lock file all xdist workers share (the parent of each worker's base temp dir)."""
    base = tmp_path_factory.getbasetemp()
    with open((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "solo.lock", "a") as fh:
        yield fh


@pytest.fixture(autouse=True)
def _solo(request, _solo_lock):
    """A `solo` test runs while the other worker waits between its tests (a lock shared by every other
    test, exclusive for it): its timing asserts never see a CPU-bound test beside it."""
    fcntl.flock(_solo_lock, fcntl.LOCK_EX if request.node.get_closest_marker("solo") else fcntl.LOCK_SH)
    yield
    fcntl.flock(_solo_lock, fcntl.LOCK_UN)


def pytest_collection_modifyitems(items):
    """Modules with a test marked `slow` run first, modules marked `solo` last, each module whole and in
    its usual order. pytest-xdist (pyproject's addopts) hands whole modules to its two workers in this
    order: the long ones start early on both workers and the short ones fill in around them (rather than
    one long test finishing alone at the end), and a `solo` module (many processes at once, timing
    asserts) runs while the other worker finishes its last short modules, not beside a CPU-bound one."""
    def rank(item) -> int:
        return 2 if item.path in solo else 0 if item.path in slow else 1

    slow = {item.path for item in items if item.get_closest_marker("slow")}
    solo = {item.path for item in items if item.get_closest_marker("solo")}
    items.sort(key=rank)  # sort is stable
