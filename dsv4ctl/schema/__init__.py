"""The data model: the single source of truth for every YAML file and the plan file."""

from dsv4ctl.schema.base import Strict
from dsv4ctl.schema.finding import Finding, Severity
from dsv4ctl.schema.io import load_model, load_yaml, validate
from dsv4ctl.schema.hardware import HardwareProfile, Kernels, Nics, Quant
from dsv4ctl.schema.keys import KEY_NAMES, EngineKeys
from dsv4ctl.schema.plan import LaunchPlan, Role, dump_plan, load_plan, plan_to_data
from dsv4ctl.schema.recipe import CliOverrides, Match, Override, Recipe, Toggles, TunedOverlay
from dsv4ctl.schema.variant import Checkpoint, Variant

# What `dsv4ctl schema` exports, by the name an editor's YAML plugin would be pointed at.
EXPORTED = {
    "hardware-profile": HardwareProfile,
    "variant": Variant,
    "recipe": Recipe,
    "tuned-overlay": TunedOverlay,
    "toggles": Toggles,
    "cli-overrides": CliOverrides,
    "launch-plan": LaunchPlan,
    "finding": Finding,
}

__all__ = [
    "Checkpoint", "CliOverrides", "EXPORTED", "EngineKeys", "Finding", "HardwareProfile", "KEY_NAMES", "Kernels",
    "LaunchPlan", "Match", "Nics", "Override", "Quant", "Recipe", "Role", "Severity", "Strict",
    "Toggles", "TunedOverlay", "Variant", "dump_plan", "load_model", "load_plan", "load_yaml",
    "plan_to_data", "validate",
]
