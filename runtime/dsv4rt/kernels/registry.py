"""Op registry. Each implementation is a plain function tagged with attributes (`op`, `backend`,
`priority`, `device`); `get(op)` returns the highest-priority one. Optional backends (triton, ...)
register from their own module via `register_optional`, which logs and skips a failed import so the
CPU path never breaks on a missing wheel (the lesson of SGLang's DSV4 plugin registries).

An implementation registered with `device="cuda"` only runs on CUDA tensors: `get` then returns a
dispatcher that sends other tensors (a CPU model on a GPU host) to the next implementation.
"""

from __future__ import annotations

import importlib
import logging
from typing import Callable

log = logging.getLogger(__name__)
_REGISTRY: dict[str, list[Callable]] = {}
_BEST: dict[str, Callable] = {}  # op -> what get(op) returns (cleared whenever an op registers)
# imported once, in this order, by the first get(); each registers only where it can run
_OPTIONAL_MODULES: tuple[str, ...] = (
    "dsv4rt.kernels.cuda_ops", "dsv4rt.kernels.triton_moe", "dsv4rt.kernels.triton_mhc",
)
_loaded = False


def register(op: str, backend: str = "reference", priority: int = 0,
             device: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator: tag `fn` and add it to the candidates for `op` (`device`: runs only there)."""

    def deco(fn: Callable) -> Callable:
        fn.op, fn.backend, fn.priority, fn.device = op, backend, priority, device
        impls = _REGISTRY.setdefault(op, [])
        impls[:] = [f for f in impls if f.backend != backend] + [fn]
        impls.sort(key=lambda f: -f.priority)
        _BEST.pop(op, None)
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
    """Import the reference ops and try each optional backend exactly once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("dsv4rt.kernels.reference")
    for mod in _OPTIONAL_MODULES:
        register_optional(mod)


def _first_device(args) -> str | None:
    for a in args:
        if hasattr(a, "device"):
            return a.device.type
    return None


def _dispatcher(impls: list[Callable]) -> Callable:
    """Pick, per call, the best implementation whose `device` matches the first tensor argument."""

    def dispatch(*args, **kwargs):
        dev = _first_device(args)
        for fn in impls:
            if fn.device is None or fn.device == dev:
                return fn(*args, **kwargs)
        raise KeyError(f"op '{impls[0].op}' has no implementation for device {dev}")

    dispatch.op, dispatch.backend, dispatch.priority, dispatch.device = impls[0].op, "dispatch", 0, None
    return dispatch


def get(op: str, backend: str | None = None) -> Callable:
    """Best implementation of `op` (or the named backend's)."""
    _ensure_loaded()
    if backend is None and op in _BEST:
        return _BEST[op]
    impls = _REGISTRY.get(op)
    if not impls:
        raise KeyError(f"no kernel registered for op '{op}'")
    if backend is None:
        best = impls[0] if impls[0].device is None else _dispatcher(list(impls))
        _BEST[op] = best
        return best
    for fn in impls:
        if fn.backend == backend:
            return fn
    raise KeyError(f"op '{op}' has no '{backend}' backend (have {[f.backend for f in impls]})")


def available() -> dict[str, list[str]]:
    """op -> backends, best first (for `dsv4ctl check` style reports)."""
    _ensure_loaded()
    return {op: [f.backend for f in impls] for op, impls in _REGISTRY.items()}
