"""Op registry. Each implementation is a plain function tagged with attributes (`op`, `backend`,
`priority`); `get(op)` returns the highest-priority one. Optional backends (triton, flashinfer, ...)
register from their own module via `register_optional`, which logs and skips a failed import so the
CPU path never breaks on a missing wheel (the lesson of SGLang's DSV4 plugin registries).
"""

from __future__ import annotations

import importlib
import logging
from typing import Callable

log = logging.getLogger(__name__)
_REGISTRY: dict[str, list[Callable]] = {}
_OPTIONAL_MODULES: tuple[str, ...] = ()  # e.g. "dsv4rt.kernels.triton_ops" once it exists


def register(op: str, backend: str = "reference", priority: int = 0) -> Callable[[Callable], Callable]:
    """Decorator: tag `fn` and add it to the candidates for `op`."""

    def deco(fn: Callable) -> Callable:
        fn.op, fn.backend, fn.priority = op, backend, priority
        impls = _REGISTRY.setdefault(op, [])
        impls[:] = [f for f in impls if f.backend != backend] + [fn]
        impls.sort(key=lambda f: -f.priority)
        return fn

    return deco


def register_optional(module: str) -> bool:
    """Import an optional backend module (it registers itself); log, never raise, on failure."""
    try:
        importlib.import_module(module)
        return True
    except Exception as e:  # noqa: BLE001 - any import failure just means "backend not available"
        log.info("kernel backend %s not registered: %s", module, e)
        return False


def _ensure_loaded() -> None:
    if "attention" not in _REGISTRY:
        importlib.import_module("dsv4rt.kernels.reference")
        for mod in _OPTIONAL_MODULES:
            register_optional(mod)


def get(op: str, backend: str | None = None) -> Callable:
    """Best implementation of `op` (or the named backend's)."""
    _ensure_loaded()
    impls = _REGISTRY.get(op)
    if not impls:
        raise KeyError(f"no kernel registered for op '{op}'")
    for fn in impls:
        if backend is None or fn.backend == backend:
            return fn
    raise KeyError(f"op '{op}' has no '{backend}' backend (have {[f.backend for f in impls]})")


def available() -> dict[str, list[str]]:
    """op -> backends, best first (for `dsv4ctl check` style reports)."""
    _ensure_loaded()
    return {op: [f.backend for f in impls] for op, impls in _REGISTRY.items()}
