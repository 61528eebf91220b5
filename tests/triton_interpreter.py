"""Run a Triton test snippet under the CPU interpreter (TRITON_INTERPRET=1 must be set before triton
imports, hence a subprocess). Interpreter tests use float32: its bf16 dot is wrong (triton 3.6)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


# triton#9171: under numpy >= 2.4 the interpreter cannot use a runtime int as a loop bound
_PRELUDE = """
import triton.runtime.interpreter as _interp

def _patch(tensor, scope, orig=_interp._patch_lang_tensor):
    orig(tensor, scope)
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))
_interp._patch_lang_tensor = _patch
"""


def run_interpreted(snippet: str, timeout: int = 120) -> None:
    """Fail unless the snippet exits 0 and prints 'ok'; skip where triton is not installed."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    res = subprocess.run([sys.executable, "-c", _PRELUDE + snippet], capture_output=True, text=True, env=env,
                         timeout=timeout)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]
