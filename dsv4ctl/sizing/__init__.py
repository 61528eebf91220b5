"""Memory model: weights per GPU from the tensor inventory, KV per attention type, communication
buffers, activations and CUDA graphs, and the KV capacity they leave. Pure functions, no torch."""

from __future__ import annotations

from dsv4ctl.schema.hardware import HardwareProfile
from dsv4ctl.schema.variant import Variant
from dsv4ctl.sizing.arch import ArchFacts, arch_facts, arch_for
from dsv4ctl.sizing.budget import MemoryBudget, memory_budget, usable_gib
from dsv4ctl.sizing.layout import GIB, Layout, PlanLike, layout_of

__all__ = ["ArchFacts", "GIB", "Layout", "MemoryBudget", "arch_facts", "arch_for", "layout_of",
           "memory_budget", "plan_budget", "PlanLike", "usable_gib"]


def plan_budget(plan: PlanLike, hw_profile: HardwareProfile, variant: Variant | None = None) -> MemoryBudget:
    """The budget of one plan on a HardwareProfile; `variant` defaults to the plan's variant."""
    a = arch_facts(variant) if variant is not None else arch_for(plan.variant)
    return memory_budget(a, layout_of(plan), usable_gib(hw_profile.hbm_gib))
