"""The declared tunables (tunables.yaml) and which of them a plan and an engine can use."""

from __future__ import annotations

from dsv4ctl.errors import UserError, did_you_mean
from dsv4ctl.schema.tunable import Tunable, all_tunables, overlay_keys  # noqa: F401 (overlay_keys re-exported)


def ignored_because(t: Tunable, plan, engine: str) -> str | None:
    """Why this plan/engine would ignore the knob (it is then not searched), or None."""
    if engine not in t.engines:
        return f"engine {engine} does not honour it"
    if t.gpu_only and plan.hardware == "cpu":
        return "no effect on the cpu profile"
    if t.needs_graphs and plan.keys.disable_cuda_graph:
        return "the plan disables CUDA graphs"
    if t.key == "spec_steps" and not plan.keys.spec_steps:
        return "the plan runs without MTP"
    return None


def narrowed(spec: str, tun: dict[str, Tunable]) -> tuple[str, Tunable | None]:
    """`key` or `key=MIN:MAX` (a --knobs entry) -> (key, the tunable with its range narrowed, or None
    for an unknown key). The narrowed range must lie inside the declared one: the search then spends its
    budget where the operator expects the optimum (the ladder still steps as declared)."""
    name, _, rng = spec.partition("=")
    name = name.strip()
    if name not in tun or not rng:
        return name, tun.get(name)
    t = tun[name]
    try:
        lo, hi = (float(v) for v in rng.split(":"))
    except ValueError:
        raise UserError(f"bad range {rng!r} for {name}", where="--knobs", fix=f"e.g. {name}={t.min}:{t.max}") from None
    if not t.min <= lo <= hi <= t.max:
        raise UserError(f"{name}={rng} is outside its declared range {t.min}:{t.max} (or empty)", where="--knobs",
                        fix=f"pick MIN <= MAX inside {t.min}:{t.max}")
    return name, t.model_copy(update={"min": lo, "max": hi})


def choose(plan, engine: str, names: list[str] | None, restart_ok: bool = True) -> list[Tunable]:
    """The tunables to search: the named ones (each must apply; `key=MIN:MAX` narrows its range) or
    every one that applies."""
    tun = dict(all_tunables())  # a copy: the declared set is cached
    chosen = [narrowed(n, tun) for n in names or []]
    tun.update({k: t for k, t in chosen if t is not None})
    names = [k for k, _ in chosen] if names else names
    for name in names or []:
        if name not in tun:
            raise UserError(f"'{name}' is not a tunable key", where="--knobs", fix=did_you_mean(name, sorted(tun)))
        if tun[name].restart and not restart_ok:
            raise UserError(f"--base-url serves a running endpoint, but {name} needs a restart",
                            where="--knobs", fix="tune it with --engine builtin|sglang (no --base-url)")
        why = ignored_because(tun[name], plan, engine)
        if why:
            raise UserError(f"'{name}' cannot be tuned here: {why}", where="--knobs", fix="drop it from --knobs")
    if names is None and not restart_ok:
        return []  # a running endpoint: only the client side (the load ladder) can move
    return [tun[n] for n in names] if names else [t for t in tun.values() if not ignored_because(t, plan, engine)]
