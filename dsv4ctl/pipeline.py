"""The one path from inputs to a checked, rendered plan. Every command (plan, explain, validate, render,
serve, the plan-space check, tune) goes through it, so each step runs once per plan:

    make_plan(PlanRequest)  resolve (layers, provenance) ─┐
    check_plan(LaunchPlan)  a plan file ──────────────────┴─► render argv once ─► rules + sizing ─► CheckedPlan

The rules read the rendered flags from what this module hands them; they never render."""

from __future__ import annotations

from dataclasses import dataclass, field

from dsv4ctl.errors import UserError
from dsv4ctl.render.sglang import NodeCommand
from dsv4ctl.resolve.layers import Layered
from dsv4ctl.schema.finding import Finding
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.schema.recipe import CliOverrides, Toggles
from dsv4ctl.validate.context import Rendered


@dataclass(frozen=True)
class RenderOptions:
    """Addresses only known where the commands run (not plan keys)."""

    host: str | None = None  # the address the PD router uses to reach its prefill/decode servers
    node0_addr: str | None = None  # rendezvous address of a multi-node role's first node


@dataclass(frozen=True)
class PlanRequest:
    """Everything a user typed to get a plan: the cell, toggles, --set, serve's cli overrides. (A plain
    dataclass: its parts are validated models already, and `plan` should not pay for another validator.)"""

    hw: str
    variant: str = "flash"
    recipe: str = "balanced"
    toggles: Toggles | None = None
    sets: tuple[str, ...] = ()
    cli: CliOverrides | None = None
    render: RenderOptions = field(default_factory=RenderOptions)


@dataclass
class CheckedPlan:
    """A plan with its findings and sizing (inside `.plan`), its rendered engine commands, and, when
    it was resolved here, the layers that made it (for `explain`)."""

    plan: LaunchPlan
    commands: list[NodeCommand] = field(default_factory=list)  # [] for the builtin engine
    render_error: UserError | None = None
    layers: dict[str | None, Layered] | None = None

    @property
    def findings(self) -> list[Finding]:
        return self.plan.findings

    @property
    def sizing(self) -> dict | None:
        return self.plan.sizing

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def exit_code(self, strict: bool = False) -> int:
        """The one exit-code policy: 2 with error findings, 1 with warnings under --strict, else 0."""
        if self.errors:
            return 2
        return 1 if strict and self.warnings else 0


def make_plan(request: PlanRequest) -> CheckedPlan:
    """Resolve the request's layers into a plan, then check it (render once, rules, sizing)."""
    from dsv4ctl.resolve import resolve_with_layers

    plan, layers = resolve_with_layers(request.hw, request.variant, request.recipe, request.toggles,
                                       list(request.sets), request.cli)
    checked = check_plan(plan, request.render)
    checked.layers = layers
    return checked


def check_plan(plan: LaunchPlan, render: RenderOptions | None = None) -> CheckedPlan:
    """Render the plan's engine commands once, run every rule on the plan and that argv, size it."""
    from dsv4ctl.validate import check

    commands, error = _render(plan, render or RenderOptions())
    flags = None if error is not None or plan.engine != "sglang" else tuple(_flags(commands))
    findings, sizing = check(plan, Rendered(flags, error))
    return CheckedPlan(plan.model_copy(update={"findings": findings, "sizing": sizing}), commands, error)


def _render(plan: LaunchPlan, opts: RenderOptions) -> tuple[list[NodeCommand], UserError | None]:
    if plan.engine != "sglang":
        return [], None  # the included runtime's argv is made at launch (it needs the run directory)
    from dsv4ctl.render.sglang import render_commands

    try:
        return render_commands(plan, host=opts.host, node0_addr=opts.node0_addr), None
    except UserError as exc:
        return [], exc


def _flags(commands: list[NodeCommand]) -> list[str]:
    """The `--flags` of every engine command (the router's are sglang-router's, not the engine's)."""
    return [a.split("=", 1)[0] for c in commands if c.role != "router" for a in c.argv if a.startswith("--")]
