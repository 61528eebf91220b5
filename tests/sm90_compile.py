"""Compile a Triton kernel for an H100 (sm_90) on a machine without a GPU, and read ptxas's register
report: catches what the CPU interpreter cannot (a construct the GPU compiler rejects, register spills)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import pytest


def sm90_ptx(fn, signature: dict[str, str], constexprs: dict[str, object], num_warps: int) -> str:
    """The PTX of fn compiled for sm_90 (signature: arg -> Triton type or "constexpr")."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps}).asm["ptx"]


def compile_sm90(fn, signature: dict[str, str], constexprs: dict[str, object], num_warps: int) -> dict[str, int]:
    """{"registers", "spill_bytes"} of fn compiled for sm_90, from ptxas's report."""
    triton = pytest.importorskip("triton")
    ptx = sm90_ptx(fn, signature, constexprs, num_warps)
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        report = subprocess.run([ptxas, "-v", "--gpu-name=sm_90a", f.name, "-o", os.devnull],
                                capture_output=True, text=True, check=True).stderr
    return {"registers": int(re.search(r"Used (\d+) registers", report).group(1)),
            "spill_bytes": int(re.search(r"(\d+) bytes spill stores", report).group(1))}


def signature(fn, types: dict[str, str], default: str = "i32") -> dict[str, str]:
    """Every argument of fn typed: `types` for pointers, floats and constexprs, `default` for the rest."""
    return {name: types.get(name, default) for name in fn.arg_names}
