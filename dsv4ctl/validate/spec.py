"""Speculative decoding (MTP / DSpark) constraints (recipes §4.2, §4.3, §7 #14)."""

from __future__ import annotations

from dsv4ctl.validate.registry import Hit, rule

OFFICIAL_MARKERS = ("0731", "0813", "official", "vision")  # releases that bundle a DSpark head


def official_checkpoint(ctx) -> bool:
    text = f"{ctx.plan.variant} {ctx.keys.model_path}".lower()
    return any(m in text for m in OFFICIAL_MARKERS)


@rule("SPEC-EAGLE-TOPK", "error", "EAGLE with topk other than 1",
      fix="set --speculative-eagle-topk 1 (and --speculative-num-draft-tokens {draft_ok})")
def eagle_topk(ctx):
    """V4's hook asserts 'Only EAGLE speculative algorithm with topk == 1 is supported for
    DeepseekV4ForCausalLM': the MTP layer drafts a single chain, no tree."""
    k = ctx.keys
    if k.spec_algorithm != "EAGLE" or k.spec_topk in (None, 1):
        return None
    return Hit(f"EAGLE topk is {k.spec_topk}", {"spec_topk": k.spec_topk, "draft_ok": (k.spec_steps or 1) + 1})


@rule("SPEC-DRAFT-TOKENS", "warning", "draft tokens do not match steps + 1",
      fix="set --speculative-num-draft-tokens {draft_ok}")
def draft_tokens(ctx):
    """With topk 1 the draft is a chain of `steps` tokens plus the verified one, so SGLang uses
    steps + 1 draft tokens whatever was asked (M314 = 3/1/4, M112 = 1/1/2); a different value means
    the DeepEP/MegaMoE budgets were computed for the wrong token count."""
    k = ctx.keys
    if k.spec_algorithm != "EAGLE" or k.spec_steps is None or k.spec_draft_tokens is None:
        return None
    if k.spec_draft_tokens == k.spec_steps + 1 or (k.spec_topk or 1) != 1:
        return None
    return Hit(f"{k.spec_draft_tokens} draft tokens for {k.spec_steps} steps",
               {"spec_steps": k.spec_steps, "spec_draft_tokens": k.spec_draft_tokens, "draft_ok": k.spec_steps + 1})


@rule("SPEC-DSPARK-CHECKPOINT", "error", "DSpark on a checkpoint without a DSpark head",
      fix="use --speculative-algorithm EAGLE on {variant}, or an official 0731/0813 checkpoint")
def dspark_checkpoint(ctx):
    """DSpark drafts with the head bundled in the later official releases (Flash-0731, Pro-0813);
    the launch checkpoints only carry the classic MTP layer, which EAGLE drives."""
    if ctx.keys.spec_algorithm != "DSPARK" or official_checkpoint(ctx):
        return None
    return Hit(f"{ctx.plan.variant} ({ctx.keys.model_path or 'no model path'}) has no DSpark head",
               {"variant": ctx.plan.variant, "model_path": ctx.keys.model_path})


@rule("SPEC-EAGLE-OFFICIAL", "warning", "EAGLE on an official checkpoint with a DSpark head",
      fix="use --speculative-algorithm DSPARK")
def eagle_official(ctx):
    """'EAGLE loads on this checkpoint without erroring but accepts no draft tokens': on the
    0731/0813 releases EAGLE costs draft compute and gains nothing."""
    if ctx.keys.spec_algorithm != "EAGLE" or not official_checkpoint(ctx):
        return None
    return Hit("EAGLE accepts no draft tokens on this checkpoint", {"model_path": ctx.keys.model_path})


@rule("SPEC-DSPARK-DP", "error", "DSpark with DP-attention or PD disaggregation",
      fix="drop DP-attention / PD, or run target-only (no speculative decoding)")
def dspark_dp(ctx):
    """'DSpark is incompatible with DP attention', and DSPARK is listed as an incompatible
    speculative algorithm for PD disaggregation."""
    if ctx.keys.spec_algorithm != "DSPARK" or not (ctx.keys.attn_dp or ctx.pd):
        return None
    return Hit("DSpark " + ("with DP-attention" if ctx.keys.attn_dp else "in a PD plan"),
               {"attn_dp": ctx.keys.attn_dp, "pd": ctx.pd})


@rule("SPEC-V2-DISABLED", "error", "MTP with spec-v2 switched off",
      fix="remove SGLANG_ENABLE_SPEC_V2 from the env (or set it to 1)")
def spec_v2(ctx):
    """'MTP currently requires SGLANG_ENABLE_SPEC_V2=1'; newer builds turn it on automatically, so
    only an explicit 0 breaks."""
    flag = str(ctx.env.get("SGLANG_ENABLE_SPEC_V2", "")).strip().lower()
    if ctx.keys.spec_algorithm is None or flag not in ("0", "false", "no", "off"):
        return None
    return Hit(f"speculative decoding with SGLANG_ENABLE_SPEC_V2={ctx.env['SGLANG_ENABLE_SPEC_V2']}",
               {"SGLANG_ENABLE_SPEC_V2": ctx.env["SGLANG_ENABLE_SPEC_V2"]})


@rule("SPEC-MAX-THROUGHPUT", "warning", "speculative decoding in the max-throughput recipe",
      fix="turn MTP off (no --speculative-algorithm) for max-throughput")
def spec_max_throughput(ctx):
    """The NVIDIA max-throughput cells run target-only: at large batches the GPU is compute-bound
    and draft tokens cost more than they save (and multiply the DeepEP/MegaMoE token budgets). The
    AMD cells keep MTP on max-throughput, so the rule skips ROCm profiles."""
    if ctx.keys.spec_algorithm is None or ctx.recipe != "max-throughput" or ctx.vendor == "amd":
        return None
    return Hit(f"{ctx.keys.spec_algorithm} is on in max-throughput", {"spec_algorithm": ctx.keys.spec_algorithm})
