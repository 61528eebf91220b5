"""Plans for the included runtime (engine `builtin`): what `python -m dsv4rt serve --plan` honours.

The runtime's own table (`dsv4rt.plan_keys`, torch-free) is the one source: the same keys it would
refuse at start-up are reported here, before anything launches."""

from __future__ import annotations

from dsv4ctl.validate.registry import Hit, rule


@rule("BUILTIN-KEY-UNSUPPORTED", "error", "the included runtime cannot honour these plan keys",
      fix="unset {keys} (e.g. --set tp=1, --set spec_topk=1), or serve the plan with --engine sglang")
def builtin_keys(ctx):
    """The included runtime is one process on one device: no tensor/expert/context parallelism, no
    DeepEP/MegaMoE all-to-all, and MTP only as EAGLE chains (top-k 1, no draft trees). It refuses such
    keys by name at start-up; catching them here saves the checkpoint load."""
    if ctx.plan.engine != "builtin":
        return None
    from dsv4rt.plan_keys import refused

    bad = refused(ctx.keys.model_dump())
    if not bad:
        return None
    listed = ", ".join(f"{k}={v!r}" for k, v in sorted(bad.items()))
    return Hit(f"not implemented by the included runtime: {listed}", {"keys": ", ".join(sorted(bad))})


@rule("BUILTIN-MULTI-PROCESS", "error", "the included runtime serves one node: one server, or a PD pair",
      fix="use a single-server recipe (low-latency, balanced, max-throughput) or pd-disagg on one node")
def builtin_roles(ctx):
    """Multi-node plans, and roles other than one server or a prefill/decode pair behind sglang-router,
    need processes the included runtime does not start."""
    if ctx.plan.engine != "builtin":
        return None
    from dsv4rt.plan_keys import PD_ROLES, extra_roles

    roles = extra_roles(r.name for r in ctx.plan.roles)
    if not roles and ctx.plan.nodes == 1:
        return None
    if sorted(roles) == sorted(PD_ROLES) and all(r.nodes <= 1 for r in ctx.plan.roles):
        return None  # a PD pair and its router, all on this host
    return Hit(f"roles {roles or ['single']} over {ctx.plan.nodes} node(s)", {"roles": roles})
