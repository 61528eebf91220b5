"""Resolve (hardware, variant, recipe, toggles, tuned overlay, --set) into a LaunchPlan with provenance.

Layer order, later wins: hardware → variant checkpoint → recipe keys → _common.yaml / recipe overrides →
toggles → tuned overlays → role-specific recipe overrides (a role's own setting is the most specific
recipe fact, e.g. parsers on decode only) → --set → cli (serve's --host/--port/…) → derived values
(only where nothing above chose).

Each set of layers (the plan-wide one, and one per PD engine role) is type-checked once, as EngineKeys,
before deriving; derived values are added to the checked keys. A single-server plan has one set."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dsv4ctl.errors import UserError
from dsv4ctl.resolve.cli import apply_cli, label
from dsv4ctl.resolve.derive import ctx_of, derive_all, derive_env
from dsv4ctl.resolve.layers import Layered
from dsv4ctl.resolve.sets import Set, apply_sets, parse_sets
from dsv4ctl.resolve.toggles import apply_toggles
from dsv4ctl.schema.hardware import HardwareProfile
from dsv4ctl.schema.keys import EngineKeys
from dsv4ctl.schema.plan import LaunchPlan, Role
from dsv4ctl.schema.recipe import CliOverrides, Override, Recipe, Toggles
from dsv4ctl.schema.variant import Variant

ENGINE_ROLES = ("single", "prefill", "decode")
ROUTER_PORT = 8000  # sglang-router's default


@dataclass
class Inputs:
    hw: HardwareProfile
    variant: Variant
    recipe: Recipe
    common: Recipe
    toggles: Toggles
    sets: list[Set]
    quant: str
    quant_layer: str
    version: str
    cli: CliOverrides | None  # None: no cli layer (and no CliOverrides validator to build)

    @property
    def pd(self) -> bool:
        return "router" in self.recipe.roles


@dataclass
class RoleLayers:
    """One set of layers (plan-wide, or one engine role's): the values with their history, the keys
    they give (checked once), and the role's node count (computed once)."""

    layered: Layered
    keys: EngineKeys
    nodes: int


def _inputs(hw: str, variant: str, recipe: str, toggles: Toggles | None, sets: list[str] | None,
            cli: CliOverrides | None = None) -> Inputs:
    from dsv4ctl.recipes import common_layer, get_recipe
    from dsv4ctl.profiles import get_profile
    from dsv4ctl.variants import get_variant

    profile, var, rec = get_profile(hw), get_variant(variant), get_recipe(recipe)
    toggles = toggles or Toggles()
    quant = toggles.quant or profile.default_quant
    layer = "toggle:--quant" if toggles.quant else f"hardware:{hw}.yaml default_quant"
    version = toggles.engine_version or rec.engine_version
    return Inputs(profile, var, rec, common_layer(), toggles, parse_sets(sets or []), quant, layer, version, cli)


def _overrides(inp: Inputs) -> list[tuple[str, Override]]:
    """(file, override) for _common.yaml then the recipe, in file order."""
    return [*((f"{inp.common.name}.yaml", o) for o in inp.common.overrides),
            *((f"{inp.recipe.name}.yaml", o) for o in inp.recipe.overrides)]


def _ctx(inp: Inputs, nodes: int, role: str | None) -> dict[str, Any]:
    return {**ctx_of(inp.hw.name, inp.variant.name, inp.quant, nodes, role), "recipe": inp.recipe.name}


def _role_nodes(inp: Inputs, role: str | None) -> int:
    """Node count: the last matching override that names one, then --nodes."""
    nodes = 1
    for _, o in _overrides(inp):
        ctx = _ctx(inp, nodes, role)
        if o.nodes is not None and o.when.model_copy(update={"nodes": None}).matches(ctx):
            nodes = o.nodes
    return inp.toggles.nodes or nodes


def _check_supported(inp: Inputs, nodes: int, role: str | None) -> None:
    for file, o in _overrides(inp):
        if o.unsupported and o.when.matches(_ctx(inp, nodes, role)):
            cell = f"{inp.hw.name}/{inp.variant.name}/{inp.quant}/{inp.recipe.name}"
            raise UserError(f"{cell} is not a supported cell: {o.unsupported}",
                            where=f"recipe:{file} overrides[{o.when.label()}]")


def _apply_overrides(v: Layered, inp: Inputs, ctx: dict[str, Any], role_specific: bool) -> None:
    for file, o in _overrides(inp):
        if (o.when.role is not None) != role_specific or not o.when.matches(ctx):
            continue
        label = f"recipe:{file} overrides[{o.when.label()}]"
        v.set_many(o.keys, label)
        for name, value in o.env.items():
            v.set_env(name, value, label)


def _apply_tuned(v: Layered, ctx: dict[str, Any]) -> None:
    from dsv4ctl.profiles import tuned_overlays

    for file, overlay in tuned_overlays():
        if overlay.when.matches(ctx):
            label = f"tuned:{file}"
            v.set_many(overlay.keys, label)
            for name, value in overlay.env.items():
                v.set_env(name, value, label)


def build_layers(inp: Inputs, role: str | None) -> RoleLayers:
    """Every layer for one role (None = the plan-wide keys), derived values included."""
    nodes = _role_nodes(inp, role)
    _check_supported(inp, nodes, role)
    ctx = _ctx(inp, nodes, role)
    ckpt = _checkpoint(inp)
    v = Layered()
    v.set_many({"model_path": ckpt.repo, "fp4_experts": ckpt.fp4_experts},
               f"variant:{inp.variant.name} checkpoints.{inp.quant}")
    v.set_many(inp.recipe.keys, f"recipe:{inp.recipe.name}.yaml")
    for name, value in inp.recipe.env.items():
        v.set_env(name, value, f"recipe:{inp.recipe.name}.yaml")
    _apply_overrides(v, inp, ctx, role_specific=False)
    apply_toggles(v, inp.toggles)
    _apply_tuned(v, ctx)
    _apply_overrides(v, inp, ctx, role_specific=True)
    apply_sets(v, inp.sets, role)
    apply_cli(v, inp.cli, inp.pd)
    if role in inp.recipe.ports:
        v.set("port", inp.recipe.ports[role], f"recipe:{inp.recipe.name}.yaml ports.{role}")
    keys = _keys(v, role)  # type-check what the layers wrote before deriving from it
    v.values.update({k: getattr(keys, k) for k in v.values})  # derive reads checked values
    start = len(v.history)
    derive_all(v, inp.hw, nodes)
    derive_env(v, inp.version)
    derived = {k: value for k, _, value in v.history[start:] if not k.startswith("env.")}
    return RoleLayers(v, keys.model_copy(update=derived), nodes)


def _checkpoint(inp: Inputs):
    from dsv4ctl.variants import get_checkpoint

    return get_checkpoint(inp.variant, inp.quant)


def _keys(v: Layered, role: str | None) -> EngineKeys:
    """Validate the layered values; a bad value names the layer (file or --set) that put it there."""
    from pydantic import ValidationError

    try:
        return EngineKeys.model_validate(v.values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "<root>"
        where = v.provenance.get(field, "plan")
        scope = f" (role {role})" if role else ""
        raise UserError(f"{err['msg']}{scope}", where=f"{where}: field '{field}'", fix="correct the value") from None


def _diff(base: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mine.items() if base.get(k) != v}


def _check_topology(keys: EngineKeys, nodes: int, gpn: int, where: str) -> None:
    """Structural impossibilities (not tuning advice: that is the validation rules' job)."""
    gpus = keys.tp * keys.pp
    if gpus > nodes * gpn:
        need = math.ceil(gpus / gpn)
        raise UserError(f"tp × pp = {gpus} GPUs but {nodes} node(s) × {gpn} GPUs", where=where,
                        fix=f"use --nodes {need} or a smaller tp")
    if keys.attn_dp and keys.tp % keys.dp:
        raise UserError(f"DP-attention needs tp ({keys.tp}) divisible by dp ({keys.dp})", where=where,
                        fix="set dp to a divisor of tp")


def _router_layers(inp: Inputs) -> Layered:
    """The PD router's one key, its port (the endpoint: --port moves it), as layers for `explain`."""
    v = Layered()
    v.set("port", inp.recipe.ports.get("router", ROUTER_PORT), f"recipe:{inp.recipe.name}.yaml ports.router")
    if inp.cli is not None and inp.cli.port is not None:
        v.set("port", inp.cli.port, label("port"))
    return v


def _router(v: Layered, prov: dict[str, str]) -> Role:
    """The router role: no engine keys of its own."""
    prov["role.router.port"] = v.provenance["port"]
    return Role(name="router", nodes=0, port=v.values["port"])


def _make_role(inp: Inputs, name: str, rl: RoleLayers, plan_keys: EngineKeys, prov: dict[str, str],
               env: dict[str, str]) -> Role:
    keys = rl.keys
    nodes = rl.nodes if name == "single" else max(1, math.ceil(keys.tp * keys.pp / inp.hw.gpus_per_node))
    _check_topology(keys, nodes, inp.hw.gpus_per_node, f"role {name}")
    role_keys = _diff(plan_keys.model_dump(), keys.model_dump())
    role_env = _diff(env, rl.layered.env)
    for key in role_keys:
        prov[f"role.{name}.{key}"] = rl.layered.provenance.get(key, "default")
    for var in role_env:
        prov[f"role.{name}.env.{var}"] = rl.layered.provenance.get(f"env.{var}", "default")
    return Role(name=name, nodes=nodes, port=keys.port, keys=role_keys, env=role_env)


def _plan_nodes(roles: list[Role], keys_of: dict[str, EngineKeys], gpn: int) -> int:
    """Single: the role's nodes. PD: roles share a node when all their GPUs fit in one."""
    engine = [r for r in roles if r.name in ENGINE_ROLES]
    if len(engine) == 1:
        return engine[0].nodes
    gpus = sum(keys_of[r.name].tp * keys_of[r.name].pp for r in engine)
    return 1 if gpus <= gpn else sum(r.nodes for r in engine)


def resolve_plan(hw: str, variant: str, recipe: str, toggles: Toggles | None = None,
                 sets: list[str] | None = None, cli: CliOverrides | None = None) -> LaunchPlan:
    """Pure: the same inputs (and files) always give the same plan. No findings (validation adds them)."""
    plan, _ = resolve_with_layers(hw, variant, recipe, toggles, sets, cli)
    return plan


def resolve_with_layers(hw: str, variant: str, recipe: str, toggles: Toggles | None = None,
                        sets: list[str] | None = None, cli: CliOverrides | None = None
                        ) -> tuple[LaunchPlan, dict[str | None, Layered]]:
    """The plan and the layers that made it ({None: plan-wide, role: that role's}), for `explain`."""
    inp = _inputs(hw, variant, recipe, toggles, sets, cli)
    engine_roles = [n for n in inp.recipe.roles if n != "router"]
    # One engine role (a single server): its layers are the plan-wide ones, built and checked once.
    base = build_layers(inp, engine_roles[0] if engine_roles == ["single"] else None)
    sets_of = {n: base if engine_roles == ["single"] else build_layers(inp, n) for n in engine_roles}
    keys = base.keys
    prov = {**base.layered.provenance, "quant": inp.quant_layer, "engine_version": _version_layer(inp)}
    for field in EngineKeys.model_fields:  # every key says where it came from, defaults included
        prov.setdefault(field, "default (unset: engine default)" if getattr(keys, field) is None else "default")
    router = _router_layers(inp) if inp.pd else None
    roles = [_router(router, prov) if n == "router" else _make_role(inp, n, sets_of[n], keys, prov, base.layered.env)
             for n in inp.recipe.roles]
    keys_of = {r.name: keys.model_copy(update=r.keys) for r in roles}
    plan = LaunchPlan(
        hardware=inp.hw.name, variant=inp.variant.name, recipe=inp.recipe.name, quant=inp.quant,
        engine=inp.variant.engine or inp.hw.engine, engine_version=inp.version, recipe_source=inp.recipe.source,
        nodes=_plan_nodes(roles, keys_of, inp.hw.gpus_per_node), gpus_per_node=inp.hw.gpus_per_node,
        keys=keys, env=dict(base.layered.env), provenance=prov, roles=roles)
    layers = {None: base.layered, **{n: rl.layered for n, rl in sets_of.items()}}
    if router is not None:
        layers["router"] = router
    return plan, layers


def _version_layer(inp: Inputs) -> str:
    return "toggle:--engine-version" if inp.toggles.engine_version else f"recipe:{inp.recipe.name}.yaml"


@dataclass
class Explanation:
    key: str
    role: str | None
    steps: list[tuple[str, Any]]  # (layer, value) in application order
    final: Any
    winner: str


def explain(hw: str, variant: str, recipe: str, key: str, toggles: Toggles | None = None,
            sets: list[str] | None = None, role: str | None = None, cli: CliOverrides | None = None) -> Explanation:
    """Each layer's value for `key` (a key name or env.NAME) and which one won."""
    check_explain_key(key)
    plan, layers = resolve_with_layers(hw, variant, recipe, toggles, sets, cli)
    return explain_key(plan, layers, key, role)


def check_explain_key(key: str) -> None:
    from dsv4ctl.errors import did_you_mean

    if not key.startswith("env.") and key not in EngineKeys.model_fields:
        raise UserError(f"unknown key '{key}'", where="explain", fix=did_you_mean(key, sorted(EngineKeys.model_fields)))


def explain_key(plan: LaunchPlan, layers: dict[str | None, Layered], key: str, role: str | None) -> Explanation:
    """Each layer's value for `key` in the layers that made `plan`, and which one won."""
    check_explain_key(key)
    name = key.split(".", 1)[1] if key.startswith("env.") else key
    layered = layers.get(role) if role else layers[None]
    if layered is None:
        raise UserError(f"plan has no role '{role}'", where="--role", fix="use one of: " + ", ".join(
            r.name for r in plan.roles))
    steps = [(layer, value) for k, layer, value in layered.history if k == key]
    final = layered.env.get(name) if key.startswith("env.") else layered.values.get(
        key, EngineKeys.model_fields[key].default)
    winner = layered.provenance.get(key, "engine default (no layer set it)")
    return Explanation(key, role, steps, final, winner)
