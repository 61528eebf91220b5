"""DeepGEMM MegaMoE: where it runs and the token capacity it needs (recipes §3, §4.6, §4.7;
kernels-hardware.md §2.1)."""

from __future__ import annotations

from dsv4ctl.sizing.layout import DEFAULT_CHUNKED_PREFILL, MEGAMOE_ENV
from dsv4ctl.validate.registry import Hit, rule


def _on(ctx) -> bool:
    return ctx.lay.a2a == "megamoe" or getattr(ctx.keys, "megamoe", "off") != "off"


def _ceil_align(x: int, a: int) -> int:
    a = max(a, 1)
    return -(-x // a) * a


def prefill_tokens_required(ctx) -> int:
    """SGLang's mega_moe_hook: ceil_align(local chunk, align), where the local chunk is the chunked
    prefill size split over DP-attention ranks (or prefill-CP ranks)."""
    lay = ctx.lay
    cpf = lay.chunked_prefill if lay.chunked_prefill and lay.chunked_prefill > 0 else DEFAULT_CHUNKED_PREFILL
    cp = (ctx.keys.cp_size or lay.tp) if ctx.keys.prefill_cp else 1  # HOOK: attn_cp = tp / dp
    if lay.attn_dp and lay.dp > 1:
        return _ceil_align(cpf // lay.dp, max(lay.tp // lay.dp // cp, 1))
    if cp > 1:
        return _ceil_align(-(-cpf // cp), lay.tp // cp)
    return _ceil_align(cpf, lay.tp)


@rule("MEGAMOE-ARCH", "error", "MegaMoE needs a Blackwell GPU",
      fix="use --moe-a2a-backend deepep (or none) on {hardware}, or plan for a B200/B300/GB200/GB300")
def arch(ctx):
    """DeepGEMM's Mega MoE kernel dispatches only arch_major == 10 (SM100/SM103) upstream; the
    cookbook says 'MegaMoE is only supported on Blackwell'."""
    if not _on(ctx) or ctx.hw is None or ctx.blackwell:
        return None
    return Hit(f"MegaMoE on {ctx.plan.hardware} ({ctx.hw.compute_capability}) is not supported",
               {"hardware": ctx.plan.hardware, "compute_capability": ctx.hw.compute_capability})


@rule("MEGAMOE-RECIPE", "error", "MegaMoE with low-latency or context-parallel serving",
      fix="turn MegaMoE off for recipe {recipe}, or use the balanced / max-throughput recipe")
def recipe(ctx):
    """The cookbook wires MegaMoE into the throughput recipes only ('MegaMoE is not supported on
    this recipe' for low-latency and cp): the fused kernel's token pool is sized for large batches,
    and prefill context parallelism splits tokens in a way its capacity check does not follow."""
    if not _on(ctx) or not (ctx.recipe == "low-latency" or ctx.keys.prefill_cp):
        return None
    return Hit(f"MegaMoE is not supported with recipe {ctx.recipe}"
               + (" and prefill context parallelism" if ctx.keys.prefill_cp else ""),
               {"recipe": ctx.recipe, "prefill_cp": ctx.keys.prefill_cp})


@rule("MEGAMOE-CHUNKED-PREFILL", "error", "MegaMoE needs chunked prefill",
      fix="set --chunked-prefill-size to a positive value (e.g. 8192)")
def chunked(ctx):
    """'DeepSeekV4 with MegaMoE requires chunked prefill to be enabled': the symmetric buffer is
    sized per chunk, so an unchunked prefill (--chunked-prefill-size -1 or 0) cannot fit."""
    cpf = ctx.lay.chunked_prefill
    if not _on(ctx) or cpf is None or cpf > 0:
        return None
    return Hit(f"chunked prefill is disabled ({cpf})", {"chunked_prefill_size": cpf})


@rule("MEGAMOE-TOKENS", "error", "MegaMoE token capacity per rank below what a step sends",
      fix="set " + MEGAMOE_ENV + " to at least {need}, or lower --chunked-prefill-size")
def tokens(ctx):
    """SGLang rejects MegaMoE when SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK is below the
    per-rank prefill chunk (ceil_align(chunk / DP-attention size, TP / DP / CP)) on prefill-capable
    servers, or below CUDA-graph max batch × draft tokens on decode-capable ones; otherwise MegaMoE
    falls back to the fused MoE path at runtime."""
    if not _on(ctx):
        return None
    lay = ctx.lay
    need_prefill = 0 if ctx.role == "decode" else prefill_tokens_required(ctx)
    need_decode = 0 if ctx.role == "prefill" else (lay.cuda_graph_max_bs or 0) * lay.draft_tokens
    need = max(need_prefill, need_decode)
    if need <= lay.megamoe_tokens:
        return None
    return Hit(f"MegaMoE capacity {lay.megamoe_tokens} tokens per rank < {need} required",
               {"need": need, "megamoe_tokens_per_rank": lay.megamoe_tokens, "prefill_need": need_prefill,
                "decode_need": need_decode, "chunked_prefill_size": lay.chunked_prefill, **ctx.where()})


@rule("MEGAMOE-W4A4-SM90", "error", "W4A4 MegaMoE on Hopper",
      fix="use --megamoe w4a8 (FP8 activations) on {hardware}")
def w4a4_sm90(ctx):
    """'--enable-w4a4-mxfp4-megamoe is incompatible with SM90 MegaMoE': Hopper has no FP4 tensor
    cores, so FP4 activations cannot run there."""
    if getattr(ctx.keys, "megamoe", "off") != "w4a4" or not ctx.hopper:
        return None
    return Hit("W4A4 MegaMoE needs FP4 tensor cores (SM100+)", {"hardware": ctx.plan.hardware})


@rule("MEGAMOE-RUNNER", "warning", "--moe-runner-backend set together with MegaMoE",
      fix="remove --moe-runner-backend ({moe_runner}); MegaMoE picks its own kernel")
def runner(ctx):
    """The cookbook: 'When running MegaMoE, don't set --moe-runner-backend manually' — MegaMoE is
    its own runner and another backend either conflicts or is ignored."""
    r = ctx.keys.moe_runner
    if not _on(ctx) or r in (None, "auto", "megamoe"):
        return None
    return Hit(f"--moe-runner-backend {r} with MegaMoE", {"moe_runner": r})


@rule("MEGAMOE-PD", "warning", "MegaMoE in a PD-disaggregated plan",
      fix="verify the PD command by hand, or turn MegaMoE off for PD")
def pd(ctx):
    """'MegaMoE is not yet wired into the PD-Disagg cookbook command': the NVIDIA srt-slurm recipes
    run it, but no verified SGLang cookbook cell does."""
    if not _on(ctx) or not ctx.pd:
        return None
    return Hit("MegaMoE is not in any verified PD-disaggregation cell", ctx.where())
