"""Op dispatch. `defines_op` turns a PyTorch reference function into the op of its name: the model
calls that function (`ops.hc_pre(...)`), which runs the best registered implementation. Each
implementation is a plain function tagged with attributes (`op`, `backend`, `priority`, `device`);
`get(op)` returns the highest-priority one. Optional backends (`dsv4rt/kernels/`: triton, ...)
register from their own module against the op function (`register(ops.hc_pre, "triton", ...)`); they
are imported by name on first use via `register_optional`, which logs and skips a failed import so
the CPU path never breaks on a missing wheel (the lesson of SGLang's DSV4 plugin registries).

An implementation registered with `device="cuda"` only runs on CUDA tensors: `get` then returns a
dispatcher that sends other tensors (a CPU model on a GPU host) to the next implementation.
"""

from __future__ import annotations

import functools
import importlib
import logging
from contextlib import contextmanager
from typing import Callable, TypeVar

log = logging.getLogger(__name__)
_REGISTRY: dict[str, list[Callable]] = {}
_BEST: dict[str, Callable] = {}  # op -> what get(op) returns (cleared whenever an op registers)
_NEXT: dict[tuple[str, str], Callable] = {}  # (op, backend) -> what next_impl returns (cleared likewise)
# imported once, in this order, by the first get(); each registers only where it can run
_OPTIONAL_MODULES: tuple[str, ...] = (
    "dsv4rt.kernels.cuda_ops", "dsv4rt.kernels.triton_moe", "dsv4rt.kernels.triton_mhc",
    "dsv4rt.kernels.triton_attention", "dsv4rt.kernels.triton_route", "dsv4rt.kernels.triton_gemv",
    "dsv4rt.kernels.triton_mhc_post", "dsv4rt.kernels.triton_cache",
)
_loaded = False
OpRef = str | Callable  # an op's name, or the op function `defines_op` made (its `.op` is the name)
F = TypeVar("F", bound=Callable)


def _name(op: OpRef) -> str:
    return op if isinstance(op, str) else op.op


def defines_op(reference: F) -> F:
    """Decorator: `reference` is the PyTorch implementation (the numerics) of the op named after it.
    Returns the op function: same signature and docstring, runs `get(op)` (the reference, or a
    backend registered for the arguments' device); `.reference` is the reference itself."""
    name = reference.__name__

    @functools.wraps(reference)
    def op_fn(*args, **kwargs):
        return get(name)(*args, **kwargs)

    op_fn.op, op_fn.reference = name, reference
    register(name)(reference)
    return op_fn


def register(op: OpRef, backend: str = "reference", priority: int = 0,
             device: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator: tag `fn` and add it to the candidates for `op` (`device`: runs only there)."""
    op = _name(op)

    def deco(fn: Callable) -> Callable:
        fn.op, fn.backend, fn.priority, fn.device = op, backend, priority, device
        impls = _REGISTRY.setdefault(op, [])
        impls[:] = [f for f in impls if f.backend != backend] + [fn]
        impls.sort(key=lambda f: -f.priority)
        _BEST.pop(op, None)
        _NEXT.clear()
        return fn

    return deco


def rel_err(got, want) -> float:
    """max|got - want| / max|want| in float32: the error a self-check reports."""
    got, want = got.float(), want.float()
    return float((got - want).abs().max() / want.abs().max())


def self_checked(what: str, check: Callable[[], float], tolerance: float) -> bool:
    """True if `check()` (a kernel's relative error against the reference on a small input, on this
    machine) is below `tolerance`; otherwise logs why. A kernel that fails to build or disagrees
    here is left out, so an untested GPU never decodes wrong tokens."""
    try:
        err = float(check())
    except Exception as e:  # noqa: BLE001 - a kernel that cannot build or run is just not available
        log.warning("%s not used: self-check failed: %s", what, e)
        return False
    if not err < tolerance:  # also catches NaN
        log.warning("%s not used: self-check error %.3g >= %.3g", what, err, tolerance)
        return False
    return True


def register_checked(op: OpRef, fn: Callable, check: Callable[[], float], tolerance: float, backend: str,
                     priority: int, device: str | None = None) -> bool:
    """`register` if `self_checked`: the next implementation stays in place otherwise."""
    if not self_checked(f"{backend} backend for op '{_name(op)}'", check, tolerance):
        return False
    register(op, backend, priority, device)(fn)
    return True


def register_optional(module: str) -> bool:
    """Import an optional backend module (it registers itself); log, never raise, on failure."""
    try:
        importlib.import_module(module)
        return True
    except Exception as e:  # noqa: BLE001 - any import failure just means "backend not available"
        log.info("kernel backend %s not registered: %s", module, e)
        return False


def _ensure_loaded() -> None:
    """Import the ops (their references) and try each optional backend exactly once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("dsv4rt.ops")
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


def get(op: OpRef, backend: str | None = None) -> Callable:
    """Best implementation of `op` (or the named backend's)."""
    _ensure_loaded()
    op = _name(op)
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


def next_impl(op: OpRef, backend: str) -> Callable:
    """What `get(op)` would return without `backend`: for a backend that takes only some shapes."""
    _ensure_loaded()
    op = _name(op)
    if (op, backend) not in _NEXT:
        _NEXT[op, backend] = _dispatcher([f for f in _REGISTRY[op] if f.backend != backend])
    return _NEXT[op, backend]


@contextmanager
def scoped():
    """Registrations made inside are undone on exit (a tool that poses as another machine, a test)."""
    _ensure_loaded()
    saved = {op: list(impls) for op, impls in _REGISTRY.items()}
    try:
        yield
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)
        _BEST.clear()
        _NEXT.clear()


def available() -> dict[str, list[str]]:
    """op -> backends, best first (for `dsv4ctl check` style reports)."""
    _ensure_loaded()
    return {op: [f.backend for f in impls] for op, impls in _REGISTRY.items()}
