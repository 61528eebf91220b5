"""GPU-free performance model of a plan (`dsv4ctl predict`): decode-step bytes/FLOPs/collectives,
prefill, MTP and queueing, with efficiency constants fitted on published numbers (constants.yaml,
calibration.yaml; docs/predict.md). No torch."""

from __future__ import annotations

from typing import Any

from dsv4ctl.predict.constants import K, load_constants
from dsv4ctl.predict.ladder import Point, Unservable, pd_point, single_point
from dsv4ctl.predict.workload import Workload

__all__ = ["K", "Point", "Unservable", "Workload", "engines", "load_constants", "predict_plan", "why_not"]


def why_not(plan: Any) -> str | None:
    """One line saying why the model cannot answer for this plan, or None when it can."""
    from dsv4ctl.profiles import find_profile
    from dsv4ctl.validate.context import variant_arch

    hw = find_profile(plan.hardware)
    if hw is None:
        return f"no hardware profile '{plan.hardware}'"
    if plan.engine != "sglang":
        return f"engine '{plan.engine}': the model is calibrated on SGLang serving only"
    if hw.vendor == "cpu" or hw.hbm_tbps <= 0 or hw.tflops_bf16 <= 0:
        return f"profile '{hw.name}' has no GPU bandwidth/TFLOPS figures"
    if variant_arch(plan.variant) is None:
        return f"unknown variant '{plan.variant}'"
    if int(plan.keys.pp or 1) > 1:
        return "pipeline parallelism is not modelled (V4 in SGLang runs pp 1)"
    return None


def engines(plan: Any) -> dict[str, Any]:
    """The Engine of each serving role ("single", or "prefill" and "decode")."""
    from dsv4ctl.predict.facts import engine_of
    from dsv4ctl.validate.context import views

    return {ctx.role or "single": engine_of(ctx) for ctx in views(plan)}


def predict_plan(plan: Any, workload: Workload, k: K | None = None, accept: float | None = None) -> list[Point]:
    """One Point per concurrency; Unservable (one line) when the plan cannot serve the workload."""
    reason = why_not(plan)
    if reason:
        raise Unservable(reason)
    k = k or load_constants()
    found = engines(plan)
    wl = workload
    if "single" in found:
        e = found["single"]
        return [single_point(e, k, wl.isl, wl.osl, c, accept) for c in wl.concurrencies]
    p, d = found["prefill"], found["decode"]
    return [pd_point(p, d, k, wl.isl, wl.osl, c, accept) for c in wl.concurrencies]
