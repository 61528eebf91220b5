"""The ops boundary (dsv4rt/ops): the import direction (kernels/ and ops/ below the model), one
documented function per op with its reference beside it, and dispatch to a registered backend."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import torch

from dsv4rt import ops
from dsv4rt.ops import registry

PKG = Path(__file__).resolve().parents[1] / "runtime" / "dsv4rt"
ABOVE_OPS = ("dsv4rt.model", "dsv4rt.layers", "dsv4rt.compiled", "dsv4rt.engine", "dsv4rt.server",
             "dsv4rt.checkpoint", "dsv4rt.generate", "dsv4rt.cli")


def _imports(path: Path) -> set[str]:
    """Every module an import statement in `path` names (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def _upward(names: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n.startswith(banned))


def test_kernels_and_ops_import_nothing_above_them():
    for path in sorted((PKG / "kernels").glob("*.py")):
        assert not _upward(_imports(path), ABOVE_OPS), path
    for path in sorted((PKG / "ops").glob("*.py")):
        # ops are the bottom: backends register against them, so ops never name a backend module
        assert not _upward(_imports(path), ABOVE_OPS + ("dsv4rt.kernels",)), path


def test_importing_every_backend_loads_no_model_module():
    """The same at run time, transitively: a fresh interpreter that imports the ops and every backend."""
    mods = [f"dsv4rt.kernels.{p.stem}" for p in sorted((PKG / "kernels").glob("*.py")) if p.stem != "__init__"]
    code = ("import importlib, sys\nfrom dsv4rt.ops import registry\nregistry.available()\n"
            f"for m in {mods!r}:\n"
            "    try:\n        importlib.import_module(m)\n    except ImportError:\n        pass\n"
            f"print(sorted(m for m in sys.modules if m.startswith({ABOVE_OPS!r})))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"


def test_every_op_is_a_documented_function_with_its_reference():
    families = [importlib.import_module(f"dsv4rt.ops.{p.stem}") for p in sorted((PKG / "ops").glob("*.py"))
                if p.stem != "__init__"]
    defined = {name for mod in families for name, fn in vars(mod).items() if hasattr(fn, "reference")}
    assert set(ops.__all__) == defined and len(defined) == 16
    for name in ops.__all__:
        fn = getattr(ops, name)
        assert fn.op == name and fn.__name__ == name and fn.reference.backend == "reference"
        assert "[" in fn.__doc__, f"ops.{name}: its docstring gives no shapes"
        assert registry.get(name, backend="reference") is fn.reference


def test_an_op_runs_the_backend_registered_against_it():
    x, w = torch.randn(2, 8), torch.randn(4, 8)
    with registry.scoped():
        registry.register(ops.fp32_linear, "probe", 10)(lambda x, w: "probe")
        assert ops.fp32_linear(x, w) == "probe" and registry.get("fp32_linear").backend == "probe"
        assert torch.equal(ops.fp32_linear.reference(x, w), x @ w.t())
    assert torch.equal(ops.fp32_linear(x, w), x @ w.t())  # the backend left with the scope
