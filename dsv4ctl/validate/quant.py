"""Checkpoint quantization versus the GPU (recipes §1, §4.8, §7 #6)."""

from __future__ import annotations

from dsv4ctl.sizing.layout import env_on
from dsv4ctl.validate.registry import Hit, rule

HOPPER_FP4_RUNNERS = (None, "auto", "marlin", "flashinfer_mxfp4")


def _original_fp4_on_hopper(ctx) -> bool:
    """The deepseek-ai FP4 checkpoint served as FP4 (not dequantized to FP8 at load) on SM90."""
    return ctx.hopper and ctx.plan.quant == "fp4" and not env_on(ctx.env, "SGLANG_DSV4_FP4_DEQUANT")


@rule("FP4-HOPPER-TP-ONLY", "error", "original FP4 checkpoint on Hopper with DP-attention or DeepEP",
      fix="use --quant fp8 (the sgl-project FP8 repack) for DP-attention/DeepEP, or plan pure TP "
          "(--tp {tp}, no --enable-dp-attention, --moe-a2a-backend none)")
def fp4_hopper_tp_only(ctx):
    """Hopper has no FP4 tensor cores: the original FP4 experts run W4A16 through Marlin or
    flashinfer_mxfp4, which the cookbook serves TP-only. DP-attention and DeepEP on Hopper need the
    FP8 repack (sgl-project/DeepSeek-V4-*-FP8)."""
    k = ctx.keys
    if not _original_fp4_on_hopper(ctx) or not (k.attn_dp or k.moe_a2a != "none"):
        return None
    return Hit(f"FP4 experts on {ctx.plan.hardware} with "
               + ("DP-attention" if k.attn_dp else f"--moe-a2a-backend {k.moe_a2a}"),
               {"tp": k.tp, "attn_dp": k.attn_dp, "moe_a2a": k.moe_a2a})


@rule("FP4-HOPPER-RUNNER", "error", "MoE runner that cannot run FP4 experts on Hopper",
      fix="use --moe-runner-backend marlin or flashinfer_mxfp4")
def fp4_hopper_runner(ctx):
    """On SM90 the FP4 experts need a W4A16 kernel: Marlin or flashinfer_mxfp4 (the auto choice).
    Other runners (deep_gemm, flashinfer_trtllm_routed, cutlass …) have no SM90 FP4 path."""
    r = ctx.keys.moe_runner
    if not _original_fp4_on_hopper(ctx) or r in HOPPER_FP4_RUNNERS:
        return None
    return Hit(f"--moe-runner-backend {r} has no FP4 path on {ctx.plan.hardware}", {"moe_runner": r})


@rule("FP8-REPACK-ENV", "error", "FP8 repack without SGLANG_DSV4_FP4_EXPERTS=0",
      fix="export SGLANG_DSV4_FP4_EXPERTS=0")
def fp8_repack_env(ctx):
    """The sgl-project FP8 repack stores the experts as FP8; SGLang assumes FP4 experts unless
    SGLANG_DSV4_FP4_EXPERTS=0 ('Set False when using FP4-to-FP8 converted checkpoint') and loads
    garbage otherwise. (The ROCm path differs; AMD cells do not set it.)"""
    if ctx.plan.quant != "fp8" or ctx.vendor != "nvidia":
        return None
    flag = str(ctx.env.get("SGLANG_DSV4_FP4_EXPERTS", "")).strip().lower()
    if flag in ("0", "false") or ctx.keys.fp4_experts is False:
        return None
    return Hit("FP8-repacked experts but SGLANG_DSV4_FP4_EXPERTS is not 0",
               {"SGLANG_DSV4_FP4_EXPERTS": ctx.env.get("SGLANG_DSV4_FP4_EXPERTS")})


@rule("QUANT-UNSUPPORTED", "error", "quantization the hardware profile does not offer",
      fix="use --quant {supported}")
def quant_unsupported(ctx):
    """Each hardware profile lists the checkpoint formats that have a kernel path on it (e.g. no
    NVFP4 on Hopper, no FP8 repack cells on Blackwell)."""
    if ctx.hw is None or ctx.plan.quant in ctx.hw.quants:
        return None
    return Hit(f"{ctx.plan.quant} is not offered on {ctx.plan.hardware}",
               {"quant": ctx.plan.quant, "supported": " or ".join(ctx.hw.quants)})


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


NVFP4_FIXED_AFTER = (0, 5, 18)  # #36275 (2026-08-26) landed after the v0.5.18 images


@rule("NVFP4-ENGINE-VERSION", "error", "NVFP4 checkpoint on an SGLang release that crashes loading it",
      fix="target a release newer than 0.5.18 (or the lmsysorg/sglang:dev image)")
def nvfp4_version(ctx):
    """'NVFP4 checkpoints crash at weight load on v0.5.18': the MXFP4-packed MTP layer's FP8
    delegate needs the #36275 guard (merged 2026-08-26), so the cookbook routes every NVFP4 cell
    to the dev image."""
    if ctx.plan.quant != "nvfp4" or _version_tuple(ctx.plan.engine_version) > NVFP4_FIXED_AFTER:
        return None
    return Hit(f"NVFP4 weights on SGLang {ctx.plan.engine_version}", {"engine_version": ctx.plan.engine_version})
