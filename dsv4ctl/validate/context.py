"""The read-only view a rule gets: the plan (or one PD role of it, with the role's keys and env
merged), its hardware profile, the variant's architecture facts, the layout and, lazily, the memory
budget. Profiles and variants are cached: the plan-space benchmark builds tens of thousands of these."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from dsv4ctl.errors import UserError
from dsv4ctl.sizing import ArchFacts, Layout, MemoryBudget, arch_for, layout_of, memory_budget, usable_gib


@lru_cache(maxsize=64)
def hardware_profile(name: str):
    """The profile named `name`, or None when there is no such file (a rule reports it)."""
    from dsv4ctl.paths import hardware_profiles_dir
    from dsv4ctl.schema import HardwareProfile, load_model

    path = hardware_profiles_dir() / f"{name}.yaml"
    return load_model(HardwareProfile, path) if path.is_file() else None


@lru_cache(maxsize=64)
def variant_arch(name: str) -> ArchFacts | None:
    try:
        return arch_for(name)
    except UserError:
        return None


def _sm(hw: Any) -> int:
    digits = "".join(ch for ch in str(getattr(hw, "compute_capability", "")) if ch.isdigit())
    return int(digits) if digits else 0


@dataclass
class View:
    """Plan-like object for one role: same fields the sizing reads (keys, env, quant, variant)."""

    keys: Any
    env: dict[str, str]
    quant: str
    variant: str


@dataclass
class Ctx:
    plan: Any
    role: str | None = None  # None: the whole plan; else "prefill" / "decode"
    keys: Any = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keys is None:
            self.keys = self.plan.keys
            self.env = dict(self.plan.env or {})

    @cached_property
    def hw(self):
        return hardware_profile(self.plan.hardware)

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


def views(plan: Any) -> list[Ctx]:
    """One Ctx per serving role: PD plans are checked per prefill/decode role with its overrides."""
    serving = [r.name for r in plan.roles if r.name in ("prefill", "decode")]
    if not serving:
        return [Ctx(plan)]
    return [Ctx(plan, name, plan.role_keys(name), plan.role_env(name)) for name in serving]
