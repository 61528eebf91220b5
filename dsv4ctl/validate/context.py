"""The read-only view a rule gets: the plan (or one PD role of it, with the role's keys and env
merged), its hardware profile, the variant's architecture facts, the layout, lazily the memory
budget, and the plan's rendered command line (made once by the pipeline, passed in as `Rendered`).
Profiles and variants are cached: the plan-space benchmark builds tens of thousands of these."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from dsv4ctl.errors import UserError
from dsv4ctl.profiles import find_profile
from dsv4ctl.schema.hardware import HardwareProfile
from dsv4ctl.schema.keys import EngineKeys
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.sizing import ArchFacts, Layout, MemoryBudget, arch_for, layout_of, memory_budget, usable_gib


@lru_cache(maxsize=64)
def variant_arch(name: str) -> ArchFacts | None:
    try:
        return arch_for(name)
    except UserError:
        return None


@dataclass(frozen=True)
class Rendered:
    """What rendering the plan gave: the `--flags` of every engine command, or the error that stopped
    it. `None` flags and no error: nothing was rendered (another engine, or no renderer asked)."""

    flags: tuple[str, ...] | None = None
    error: UserError | None = None


def _sm(hw: HardwareProfile | None) -> int:
    digits = "".join(ch for ch in str(getattr(hw, "compute_capability", "")) if ch.isdigit())
    return int(digits) if digits else 0


@dataclass
class View:
    """Plan-like object for one role: same fields the sizing reads (keys, env, quant, variant)."""

    keys: EngineKeys
    env: dict[str, str]
    quant: str
    variant: str


@dataclass
class Ctx:
    plan: LaunchPlan
    role: str | None = None  # None: the whole plan; else "prefill" / "decode"
    keys: EngineKeys | None = None
    env: dict[str, str] = field(default_factory=dict)
    rendered: Rendered = field(default_factory=Rendered)

    def __post_init__(self) -> None:
        if self.keys is None:
            self.keys = self.plan.keys
            self.env = dict(self.plan.env or {})

    @cached_property
    def hw(self) -> HardwareProfile | None:
        return find_profile(self.plan.hardware)

    @cached_property
    def arch(self) -> ArchFacts | None:
        return variant_arch(self.plan.variant)

    @cached_property
    def lay(self) -> Layout:
        return layout_of(View(self.keys, self.env, self.plan.quant, self.plan.variant))

    @cached_property
    def budget(self) -> MemoryBudget | None:
        if self.hw is None or self.arch is None:
            return None
        return memory_budget(self.arch, self.lay, usable_gib(self.hw.hbm_gib))

    @property
    def sm(self) -> int:
        return _sm(self.hw)

    @property
    def vendor(self) -> str:
        return getattr(self.hw, "vendor", "nvidia")

    @property
    def hopper(self) -> bool:
        return self.vendor == "nvidia" and self.sm == 90

    @property
    def blackwell(self) -> bool:
        """SM100/SM103: the only arch_major DeepGEMM MegaMoE dispatches upstream."""
        return self.vendor == "nvidia" and 100 <= self.sm < 110

    @property
    def pd(self) -> bool:
        return any(r.name in ("prefill", "decode") for r in self.plan.roles)

    @property
    def nodes(self) -> int:
        """Nodes this role (or the single server) spans."""
        if self.role is not None:
            role = self.plan.role(self.role)
            return max(role.nodes, 1) if role is not None else self.plan.nodes
        return self.plan.nodes

    @property
    def recipe(self) -> str:
        return str(self.plan.recipe)

    def where(self) -> dict[str, Any]:
        return {"role": self.role} if self.role else {}


def views(plan: LaunchPlan, rendered: Rendered | None = None) -> list[Ctx]:
    """One Ctx per serving role: PD plans are checked per prefill/decode role with its overrides."""
    rendered = rendered or Rendered()
    serving = [r.name for r in plan.roles if r.name in ("prefill", "decode")]
    if not serving:
        return [Ctx(plan, rendered=rendered)]
    return [Ctx(plan, name, plan.role_keys(name), plan.role_env(name), rendered) for name in serving]
