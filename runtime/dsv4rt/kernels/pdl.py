"""Programmatic dependent launch (PDL) for the decode kernels (Hopper and later).

A decode step at batch 1 is ~150 kernels of a few µs each, and each one's start (launch, the first
HBM round trip of its weights) waited for the previous one's end. With PDL a kernel is launched while
the previous one still runs: it loads what no earlier kernel writes (weights) and then waits, in
`gdc_wait`, until the previous kernel has finished and its writes are visible.

The rules every kernel launched with `args()` keeps:
- it calls `wait_prior(PDL)` on every path, before it reads anything an earlier kernel wrote and
  before any store. Completion is then transitive: when a kernel passes its wait, all earlier kernels
  have finished, so the kernel after it may read any of their outputs after its own wait;
- before the wait it reads only constants (weights, norm weights, tables), or, from L2 (`.cg`: the
  SM's L1 may hold an older copy), what a kernel at least two launches back wrote. That kernel has
  finished: the previous kernel let this one launch only after its own wait.

`wait_prior` also lets the next kernel launch (`gdc_launch_dependents`) once every program of this one
has passed its wait. Placed there, at most one kernel waits ahead of the running one, and programs
that wait never hold SM slots that an unfinished kernel still needs.

Off without CUDA, below sm_90, under the Triton interpreter, with a Triton lacking the instructions,
or with DSV4RT_PDL=0. `use(False)` turns it off for the kernels launched (or captured) inside.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import triton
import triton.language as tl

try:  # Triton ≥ 3.4; without them `supported()` is False and the PDL branch is never compiled
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - older Triton
    gdc_launch_dependents = gdc_wait = None
_FORCED: list[bool] = []  # the innermost `use(...)`, if any
_DEFAULT: list[bool] = []  # the machine's answer, computed once


def supported() -> bool:
    """PDL can run here: a CUDA device of compute capability ≥ 9.0 and a Triton with griddepcontrol."""
    if not _DEFAULT:
        _DEFAULT.append(_probe())
    return _DEFAULT[0]


def _probe() -> bool:
    if os.environ.get("DSV4RT_PDL", "1") == "0" or os.environ.get("TRITON_INTERPRET") == "1":
        return False
    import torch

    return gdc_wait is not None and torch.cuda.is_available() and torch.cuda.get_device_capability() >= (9, 0)


def enabled() -> bool:
    """Whether the next launch uses PDL (read at each launch, so graphs captured under `use(False)`
    keep plain launches)."""
    return _FORCED[-1] if _FORCED else supported()


@contextmanager
def use(on: bool):
    """PDL on (where `supported`) or off for the launches inside."""
    _FORCED.append(bool(on) and supported())
    try:
        yield
    finally:
        _FORCED.pop()


def args() -> dict:
    """The launch keywords: the kernel's PDL constexpr and the launcher's attribute, both together."""
    on = enabled()
    return {"PDL": on, "launch_pdl": on}


@triton.jit
def wait_prior(PDL: tl.constexpr):
    """Wait until the previous kernel's writes are visible, then let the next kernel launch."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
