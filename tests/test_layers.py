"""The control plane's packages import only downward (issue 19): every `import dsv4ctl.X` in every module
(lazy imports inside functions included) goes to a room on a lower layer. Rooms on one layer are
siblings and never import each other (render and validate both read plans; the pipeline joins them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dsv4ctl"

# Lowest first. A room is a top-level module or package of dsv4ctl ("dsv4ctl" is the package root).
LAYERS: list[set[str]] = [
    {"dsv4ctl", "errors", "paths", "console"},  # no project imports
    {"files"},  # writing user-named files (one-line errors)
    {"schema"},  # the data model: every file and the plan
    {"vocab", "variants", "recipes", "profiles"},  # data on disk, read through the schema
    {"sizing"},  # memory model over variant facts
    {"resolve"},  # layers with provenance → LaunchPlan
    {"render", "validate"},  # plan → argv;  plan (+ rendered flags) → findings
    {"pipeline"},  # resolve → render once → rules + sizing: CheckedPlan
    {"space", "predict"},  # the plan-space check; the GPU-free performance model
    {"launch", "bench", "doctor"},  # serve's supervisor; the load generator; the host's readiness
    {"tune", "quickstart"},  # candidates served by launch, measured by bench; plan → serve → bench → report
    {"commands"},  # the Typer commands
    {"cli"},
    {"__main__"},
]
LEVEL = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else ("dsv4ctl" if parts[0] == "__init__.py" else parts[0][:-3])


def _targets(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dsv4ctl":
            parts = node.module.split(".")
            out.update([parts[1]] if len(parts) > 1 else [_root_name(a.name) for a in node.names])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] if "." in a.name else "dsv4ctl"
                       for a in node.names if a.name.split(".")[0] == "dsv4ctl")
    return out


def _root_name(name: str) -> str:
    """`from dsv4ctl import X`: X is a room when it is a module or package, else the root's attribute."""
    return name if (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir() else "dsv4ctl"


def _edges() -> list[tuple[str, str, str]]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _room(path)
        for dst in sorted(_targets(ast.parse(path.read_text(encoding="utf-8")))):  # one order in every process (xdist)
            if dst != src:
                edges.append((src, dst, str(path.relative_to(PACKAGE.parent))))
    return edges


def test_every_room_has_a_layer():
    rooms = {_room(p) for p in PACKAGE.rglob("*.py")}
    assert rooms <= set(LEVEL), f"add {sorted(rooms - set(LEVEL))} to LAYERS"


@pytest.mark.parametrize("src,dst,where", _edges(), ids=lambda v: v if "/" not in v else "")
def test_imports_go_down(src, dst, where):
    assert dst in LEVEL, f"{where} imports unknown room dsv4ctl.{dst}"
    assert LEVEL[dst] < LEVEL[src], f"{where}: {src} (layer {LEVEL[src]}) imports {dst} (layer {LEVEL[dst]})"


def test_the_check_sees_a_wrong_arrow(tmp_path):
    """The parser finds lazy imports inside functions (a check that cannot fail is a defect)."""
    tree = ast.parse("def f():\n    from dsv4ctl.render.sglang import render_commands\n    import dsv4ctl.launch.x\n")
    assert _targets(tree) == {"render", "launch"}
