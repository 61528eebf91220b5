"""Golden tests: every cell of reference/sglang-v4-recipes.md §2.1 (GEN-N values) and the REC cp / pd-disagg
cells of §2.4, written here in the cookbook's own abbreviations, against the rendered `sglang serve` argv+env.

The cookbook spells flags the pre-0.5.23 way; TRANSLATE holds the 0.5.23 renames from reference/README.md
(and the CP rename from §2.3), so a cell is compared flag-for-flag with what dsv4ctl renders for 0.5.23."""

from __future__ import annotations

import shlex

import pytest

from dsv4ctl.render.sglang import render_commands
from dsv4ctl.resolve import resolve_plan
from dsv4ctl.schema import Toggles

SMS96 = """--deepep-config '{"normal_dispatch":{"num_sms":96},"normal_combine":{"num_sms":96}}'"""
ABBR = {
    "M314": "--speculative-algorithm EAGLE --speculative-num-steps 3 --speculative-eagle-topk 1 "
            "--speculative-num-draft-tokens 4",
    "M112": "--speculative-algorithm EAGLE --speculative-num-steps 1 --speculative-eagle-topk 1 "
            "--speculative-num-draft-tokens 2",
    "FI": "--moe-runner-backend flashinfer_mxfp4", "MAR": "--moe-runner-backend marlin",
    "TRR": "--moe-runner-backend flashinfer_trtllm_routed", "DE": "--moe-a2a-backend deepep",
    "MM": "--moe-a2a-backend megamoe", "SMS96": SMS96, "NOAT": "--disable-flashinfer-autotune",
    "CP": "--enable-nsa-prefill-context-parallel --nsa-prefill-cp-mode round-robin-split",
    "PDP": "--disaggregation-mode prefill --disaggregation-transfer-backend mooncake",
    "PDD": "--disaggregation-mode decode --disaggregation-transfer-backend mooncake",
}
VALUE_ABBR = {"swa": "--swa-full-tokens-ratio", "mfs": "--mem-fraction-static", "cgd": "--cuda-graph-max-bs-decode",
              "mrr": "--max-running-requests", "cpf": "--chunked-prefill-size"}
ENV_ABBR = {
    "DD": "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK={}",
    "MMT": "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK={}",
    "MNNVL": "NCCL_MNNVL_ENABLE=1 NCCL_CUMEM_ENABLE=1", "FP8X": "SGLANG_DSV4_FP4_EXPERTS=0",
    "JIT": "SGLANG_OPT_USE_JIT_INDEXER_METADATA=1",
    "AMDA": "SGLANG_USE_ROCM700A=0 SGLANG_HACK_FLASHMLA_BACKEND=unified_kv_triton AITER_BF16_FP8_MOE_BOUND=0 "
            "TORCH_BLAS_PREFER_HIPBLASLT=1",
    "AMDB": "SGLANG_SHARED_EXPERT_TP1=1 SGLANG_DP_SHARED_EXPERT_LOCAL=1 SGLANG_DP_USE_GATHERV=1 "
            "SGLANG_DP_USE_REDUCE_SCATTER=1",
    "AITER": "SGLANG_OPT_USE_AITER_BATCHED_GEMM=true",
}
AMD = "--tp 8 --attention-backend dsv4 --page-size 256 mfs 0.90 --kv-cache-dtype fp8_e4m3 M314"
REPO = {"fp4": "deepseek-ai/DeepSeek-V4-{}", "fp8": "sgl-project/DeepSeek-V4-{}-FP8",
        "nvfp4": "nvidia/DeepSeek-V4-{}-NVFP4"}

# (hw list, variant, quant, recipe, nodes, env, flags) — reference §2.1, GEN-N values.
CELLS = [
    ("b200 b300 gb200", "flash", "fp4", "low-latency", 1, "", "--tp 4 FI M314 NOAT swa 0.1"),
    ("gb300", "flash", "fp4", "low-latency", 1, "", "--tp 4 FI M314 swa 0.1"),
    ("b200 b300 gb200 gb300", "flash", "fp4", "balanced", 1, "DD 1024", "DPA 4 DE M112 SMS96"),
    ("b200 b300 gb200 gb300", "flash", "fp4", "max-throughput", 1, "MMT 8320", "DPA 4 MM"),
    ("b200 b300", "pro", "fp4", "low-latency", 1, "", "--tp 8 FI M314 cpf 8192 NOAT swa 0.1 mfs 0.90"),
    ("b300", "pro", "fp4", "balanced", 1, "",
     "DPA 8 FI NOAT cpf 32768 swa 0.1 M112 mfs 0.92 cgd 256 SMS96"),
    ("b200", "pro", "fp4", "balanced", 1, "MMT 4096", "DPA 8 MM cpf 32768 swa 0.1 M112 mfs 0.92 cgd 256"),
    ("b200 b300", "pro", "fp4", "max-throughput", 1, "MMT 8320",
     "DPA 8 MM mfs 0.835 cgd 544 swa 0.075 cpf 65536 --tokenizer-worker-num 8 --enable-prefill-delayer"),
    ("gb200", "pro", "fp4", "low-latency", 2, "MNNVL DD 256", "--tp 8 FI M314 cpf 8192 NOAT swa 0.1 mfs 0.90"),
    ("gb200", "pro", "fp4", "balanced", 2, "MNNVL DD 256", "DPA 8 DE M112 mfs 0.78 cgd 64 mrr 128"),
    ("gb200", "pro", "fp4", "max-throughput", 2, "MNNVL MMT 8320", "DPA 8 MM mfs 0.78 cgd 64 mrr 256"),
    ("gb300", "pro", "fp4", "low-latency", 1, "", "--tp 4 FI M314 cpf 8192 NOAT swa 0.1 mfs 0.90"),
    ("gb300", "pro", "fp4", "balanced", 1, "DD 256", "DPA 4 DE M112 mfs 0.9 cgd 128 mrr 256 SMS96"),
    ("gb300", "pro", "fp4", "max-throughput", 1, "MMT 8320", "DPA 4 MM mfs 0.9 cgd 128 mrr 256"),
    ("b200 b300 gb200 gb300", "flash", "nvfp4", "low-latency", 1, "", "--tp 4 TRR M314 NOAT swa 0.1"),
    ("b200", "pro", "nvfp4", "low-latency", 1, "", "--tp 8 TRR M314 cpf 8192 NOAT swa 0.1"),
    ("b300", "pro", "nvfp4", "low-latency", 1, "", "--tp 8 TRR M314 cpf 8192 NOAT swa 0.1 mfs 0.90"),
    ("gb200", "pro", "nvfp4", "low-latency", 2, "", "--tp 8 TRR M314 cpf 8192 NOAT swa 0.1 mfs 0.90"),
    ("gb300", "pro", "nvfp4", "low-latency", 1, "", "--tp 4 TRR M314 cpf 8192 NOAT swa 0.1 mfs 0.90"),
    ("h200", "flash", "fp8", "low-latency", 1, "FP8X", "--tp 4 M314"),
    ("h200", "flash", "fp8", "balanced", 1, "FP8X DD 256", "DPA 4 DE M112 cgd 128 mrr 128 SMS96"),
    ("h200", "flash", "fp8", "max-throughput", 1, "FP8X DD 256", "DPA 4 DE cgd 128 mrr 256 SMS96"),
    ("h200", "pro", "fp8", "low-latency", 2, "FP8X DD 128", "DPA 16 DE cgd 8 mrr 32 M314 mfs 0.88"),
    ("h200", "pro", "fp8", "balanced", 2, "FP8X DD 128", "DPA 16 DE M112 mfs 0.88 cgd 8 mrr 32"),
    ("h200", "pro", "fp8", "max-throughput", 2, "FP8X DD 128", "DPA 16 DE mfs 0.88 cgd 128 mrr 256"),
    ("h200", "flash", "fp4", "low-latency", 1, "", "--tp 4 FI --flashinfer-mxfp4-moe-precision fp8 M314"),
    ("h200", "flash", "fp4", "balanced", 1, "", "--tp 4 FI M112"),
    ("h200", "flash", "fp4", "max-throughput", 1, "", "--tp 4 MAR"),
    ("h200", "pro", "fp4", "low-latency", 1, "", "--tp 8 FI --flashinfer-mxfp4-moe-precision fp8 M314 mfs 0.90"),
    ("h200", "pro", "fp4", "balanced", 1, "", "--tp 8 FI M112 mfs 0.88"),
    ("h200", "pro", "fp4", "max-throughput", 1, "", "--tp 8 FI mfs 0.88"),
    ("h100", "flash", "fp4", "low-latency", 1, "", "--tp 8 MAR M314"),
    ("h100", "flash", "fp4", "balanced", 1, "", "--tp 8 MAR M112"),
    ("h100", "flash", "fp4", "max-throughput", 1, "", "--tp 8 MAR"),
    ("h100", "pro", "fp4", "low-latency", 2, "SGLANG_SHARED_EXPERT_TP1=1", "--tp 16 MAR M314 mfs 0.9 cgd 8 mrr 32"),
    ("h100", "pro", "fp4", "balanced", 2, "SGLANG_SHARED_EXPERT_TP1=1", "--tp 16 MAR M112 mfs 0.9 cgd 8 mrr 32"),
    ("h100", "pro", "fp4", "max-throughput", 2, "SGLANG_SHARED_EXPERT_TP1=1", "--tp 16 MAR mfs 0.9"),
    ("mi300x", "flash", "fp8", "low-latency", 1, "AMDA",
     f"{AMD} swa 0.1 --disable-shared-experts-fusion cpf 16384"),
    ("mi300x", "flash", "fp8", "balanced max-throughput", 1, "AMDA SGLANG_DP_USE_GATHERV=1",
     f"{AMD} swa 0.1 --disable-shared-experts-fusion DPA 8 --enable-prefill-delayer "
     "--prefill-delayer-max-delay-ms 5000 cpf 65536"),
    ("mi355x", "flash pro", "fp4 fp8", "low-latency", 1, "AMDA AITER",
     f"{AMD} swa 0.15 --enforce-shared-experts-fusion cpf 16384"),
    ("mi355x", "flash pro", "fp4 fp8", "balanced max-throughput", 1, "AMDA AITER AMDB",
     f"{AMD} swa 0.15 --enforce-shared-experts-fusion DPA 8 --enable-two-batch-overlap cpf 65536"),
    # reference §2.4 (REC): context parallel
    ("b200 b300 gb200 gb300", "flash", "fp4", "cp", 1, "DD 1024 JIT",
     "--tp 4 DE CP cpf 16384 mfs 0.78 mrr 1024 SMS96"),
    ("b200 b300", "pro", "fp4", "cp", 1, "DD 256 JIT", "--tp 8 DE CP cpf 16384 mfs 0.78 cgd 256 mrr 256 SMS96"),
    ("gb300", "pro", "fp4", "cp", 1, "DD 256 JIT", "--tp 4 DE CP cpf 16384 mfs 0.88 cgd 256 mrr 256 SMS96"),
    ("h200", "flash", "fp8", "cp", 1, "FP8X DD 1024 JIT", "--tp 4 DE CP cpf 16384 mfs 0.78 mrr 1024 SMS96"),
]

# (hw, variant, quant, role, nodes-per-role, env, flags) — reference §2.4 pd-disagg (REC).
PD_CELLS = [
    ("b200", "flash", "fp4", "prefill", 1, "",
     "DPA 2 DE PDP --disaggregation-ib-device mlx5_7 --dist-init-addr 127.0.0.1:30335"),
    ("b200", "flash", "fp4", "decode", 1, "DD 1024",
     "DPA 2 DE PDD --disaggregation-ib-device mlx5_7 --dist-init-addr 127.0.0.1:30435 mrr 256"),
    ("b200", "pro", "fp4", "decode", 1, "DD 1024",
     "DPA 8 DE PDD --disaggregation-ib-device mlx5_7 --dist-init-addr 127.0.0.1:30435 mrr 256"),
    ("gb300", "pro", "fp4", "prefill", 1, "DD 256 SGLANG_MOONCAKE_CUSTOM_MEM_POOL=True", "DPA 4 DE PDP"),
    ("gb300", "pro", "fp4", "decode", 1, "DD 256 SGLANG_MOONCAKE_CUSTOM_MEM_POOL=True",
     "DPA 4 DE PDD mrr 128 mfs 0.9 cgd 128"),
    ("gb300", "flash", "fp4", "decode", 1, "DD 1024 SGLANG_MOONCAKE_CUSTOM_MEM_POOL=True", "DPA 4 DE PDD mrr 256"),
    ("h200", "flash", "fp8", "prefill", 1, "FP8X",
     "DPA 4 PDP --disaggregation-ib-device mlx5_0 --dist-init-addr 127.0.0.1:30335"),
    ("h200", "flash", "fp8", "decode", 1, "FP8X",
     "DPA 4 PDD --disaggregation-ib-device mlx5_0 --dist-init-addr 127.0.0.1:30435 mrr 256"),
    ("h200", "pro", "fp8", "prefill", 2, "FP8X DD 128",
     "DPA 16 DE PDP --disaggregation-ib-device mlx5_0 cgd 128 mfs 0.9"),
    ("h200", "pro", "fp8", "decode", 2, "FP8X DD 128",
     "DPA 16 DE PDD --disaggregation-ib-device mlx5_0 cgd 128 mfs 0.9 mrr 256"),
]


def expand_flags(text: str) -> list[str]:
    """Cookbook abbreviations → cookbook argv (pre-0.5.23 spelling)."""
    words, out, i = shlex.split(text), [], 0
    while i < len(words):
        w = words[i]
        if w == "DPA":
            n = words[i + 1]
            out += ["--tp", n, "--dp", n, "--enable-dp-attention"]
            i += 2
        elif w in VALUE_ABBR:
            out += [VALUE_ABBR[w], words[i + 1]]
            i += 2
        else:
            out += shlex.split(ABBR[w]) if w in ABBR else [w]
            i += 1
    return out


def expand_env(text: str) -> dict[str, str]:
    words, out, i = text.split(), {}, 0
    while i < len(words):
        w = words[i]
        if w in ("DD", "MMT"):
            pairs, i = ENV_ABBR[w].format(words[i + 1]).split(), i + 2
        else:
            pairs, i = (ENV_ABBR[w].split() if w in ENV_ABBR else [w]), i + 1
        out.update(p.split("=", 1) for p in pairs)
    return out


def _norm(value: str) -> str:
    try:
        return repr(float(value))
    except ValueError:
        return value


def to_map(argv: list[str]) -> dict[str, str]:
    """argv → {flag: value} ('' for switches); numbers normalised so 0.90 == 0.9. Duplicates must agree."""
    out: dict[str, str] = {}
    for i, tok in enumerate(argv):
        if tok.startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else ""
            assert out.get(tok, _norm(value)) == _norm(value), f"{tok} given twice with different values"
            out[tok] = _norm(value)
    return out


def translate_0523(flags: dict[str, str]) -> dict[str, str]:
    """The renames SGLang 0.5.23 needs (reference/README.md; CP per §2.3 / newest HOOK)."""
    out = dict(flags)
    for old, new in (("--tp", "--tp-size"), ("--dp", "--dp-size")):
        if old in out:
            out[new] = out.pop(old)
    if out.pop("--enable-dp-attention", None) is not None:
        out["--attn-dp-size"] = out["--dp-size"]
    if out.pop("--enable-nsa-prefill-context-parallel", None) is not None:
        out.pop("--nsa-prefill-cp-mode")
        out.update({"--enable-prefill-cp": "", "--cp-strategy": "interleave"})
    return out


STRUCTURAL = ("--model-path", "--trust-remote-code", "--host", "--port", "--nnodes", "--node-rank")


def _cases():
    for hws, variants, quants, recipes, nodes, env, flags in CELLS:
        for hw in hws.split():
            for variant in variants.split():
                for quant in quants.split():
                    for recipe in recipes.split():
                        yield pytest.param(hw, variant, quant, recipe, nodes, env, flags,
                                           id=f"{hw}-{variant}-{quant}-{recipe}")


def _check(cmds, variant, quant, nodes, env, flags):
    assert len(cmds) == nodes
    want = translate_0523(to_map(expand_flags(flags)))
    for rank, cmd in enumerate(cmds):
        assert cmd.argv[:2] == ["sglang", "serve"]
        got = to_map(cmd.argv)
        assert got["--model-path"] == REPO[quant].format(variant.capitalize())
        assert "--trust-remote-code" in got and got["--host"] == "0.0.0.0"
        if nodes > 1:
            assert (got["--nnodes"], got["--node-rank"]) == (_norm(str(nodes)), _norm(str(rank)))
            assert got.pop("--dist-init-addr").endswith(":20000")
        assert {k: v for k, v in got.items() if k not in STRUCTURAL} == want
        assert cmd.env == expand_env(env)


@pytest.mark.parametrize("hw,variant,quant,recipe,nodes,env,flags", list(_cases()))
def test_cookbook_cell(hw, variant, quant, recipe, nodes, env, flags):
    plan = resolve_plan(hw, variant, recipe, Toggles(quant=quant), [])
    cmds = render_commands(plan, node0_addr="10.0.0.1")
    assert plan.nodes == nodes
    _check(cmds, variant, quant, nodes, env, flags)
    assert cmds[0].port == 30000


@pytest.mark.parametrize("hw,variant,quant,role,nodes,env,flags", PD_CELLS,
                         ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in PD_CELLS])
def test_pd_cell(hw, variant, quant, role, nodes, env, flags):
    plan = resolve_plan(hw, variant, "pd-disagg", Toggles(quant=quant), [])
    cmds = [c for c in render_commands(plan, node0_addr="10.0.0.1") if c.role == role]
    _check(cmds, variant, quant, nodes, env, flags)
    assert cmds[0].port == {"prefill": 30000, "decode": 30001}[role]


def test_pd_router_matches_rec():
    plan = resolve_plan("b200", "flash", "pd-disagg", Toggles(), [])
    router = [c for c in render_commands(plan, host="10.0.0.5") if c.role == "router"]
    assert router[0].argv == shlex.split(
        "python3 -m sglang_router.launch_router --pd-disaggregation --prefill http://10.0.0.5:30000 "
        "--decode http://10.0.0.5:30001 --host 0.0.0.0 --port 8000 --disable-circuit-breaker "
        "--health-check-interval-secs 999999")
    assert router[0].port == 8000


def test_older_vocabulary_renders_cookbook_spelling():
    """GEN-N's v0.5.18 images: DP-attention as the --enable-dp-attention switch, the rest as for 0.5.23."""
    plan = resolve_plan("gb300", "pro", "balanced", Toggles(engine_version="0.5.18"), [])
    argv = render_commands(plan)[0].argv
    assert "--enable-dp-attention" in argv and "--attn-dp-size" not in argv
    old = resolve_plan("b200", "flash", "cp", Toggles(engine_version="0.5.12"), [])
    got = to_map(render_commands(old)[0].argv)
    assert got["--nsa-prefill-cp-mode"] == "round-robin-split" and "--enable-nsa-prefill-context-parallel" in got
