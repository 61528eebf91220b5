"""Plan factory for the rule tests, and the reference cells of sglang-v4-recipes.md §2 written out as
plans by hand (independent of the resolver, so a resolver bug cannot hide a rule bug)."""

from __future__ import annotations

from dsv4ctl.schema import EngineKeys, LaunchPlan, Role

M314 = dict(spec_algorithm="EAGLE", spec_steps=3, spec_topk=1, spec_draft_tokens=4)
M112 = dict(spec_algorithm="EAGLE", spec_steps=1, spec_topk=1, spec_draft_tokens=2)
FP8X = {"SGLANG_DSV4_FP4_EXPERTS": "0"}
MNNVL = {"NCCL_MNNVL_ENABLE": "1", "NCCL_CUMEM_ENABLE": "1"}


def dd(n: int) -> dict[str, str]:
    return {"SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK": str(n)}


def mmt(n: int) -> dict[str, str]:
    return {"SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK": str(n)}


def dpa(n: int, a2a: str = "deepep") -> dict:
    return dict(tp=n, dp=n, attn_dp=True, moe_a2a=a2a)


GPN = {"gb200": 4, "gb300": 4}


def mk(hw: str = "b200", variant: str = "flash", quant: str = "fp4", recipe: str = "low-latency",
       nodes: int = 1, env: dict | None = None, roles: list[Role] | None = None, gpn: int | None = None,
       engine_version: str = "0.5.23", **keys) -> LaunchPlan:
    gpn = gpn or GPN.get(hw, 8)
    keys.setdefault("tp", nodes * gpn)
    return LaunchPlan(hardware=hw, variant=variant, recipe=recipe, quant=quant, engine_version=engine_version,
                      nodes=nodes, gpus_per_node=gpn, keys=EngineKeys(**keys), env=env or {},
                      roles=roles or [Role(name="single", nodes=nodes)])


def for_runtime(plan: LaunchPlan) -> LaunchPlan:
    """The same plan served by the included runtime (engine `builtin`)."""
    return plan.model_copy(update={"engine": "builtin", "engine_version": "dsv4rt"})


def pd_plan(hw: str = "h200", variant: str = "flash", quant: str = "fp8", env: dict | None = None,
            role_nodes: int = 1, plan_nodes: int | None = None, **keys) -> LaunchPlan:
    """prefill + decode + router; each role on its own nodes unless `plan_nodes` says fewer (shared)."""
    roles = [Role(name="prefill", nodes=role_nodes, keys={"disagg_mode": "prefill"}),
             Role(name="decode", nodes=role_nodes, port=30001, keys={"disagg_mode": "decode"}),
             Role(name="router", nodes=0, port=8000)]
    gpn = GPN.get(hw, 8)
    keys.setdefault("tp", role_nodes * gpn)
    keys.setdefault("transfer_backend", "mooncake")
    return mk(hw, variant, quant, "pd-disagg", nodes=plan_nodes or 2 * role_nodes, env=env, roles=roles, **keys)


FI = dict(moe_runner="flashinfer_mxfp4")
LL_BW = dict(disable_flashinfer_autotune=True, swa_full_tokens_ratio=0.1)

# (name, plan, documented rule ids it raises)
REFERENCE_CELLS = [
    ("b200 flash fp4 LL", mk("b200", tp=4, gpn=4, **FI, **M314, **LL_BW), ()),
    ("b200 flash fp4 BAL", mk("b200", recipe="balanced", gpn=4, env=dd(1024), **dpa(4), **M112,
                              deepep_num_sms=96), ()),
    ("b200 flash fp4 HT", mk("b200", recipe="max-throughput", gpn=4, env=mmt(8320), **dpa(4, "megamoe")), ()),
    ("b200 pro fp4 LL", mk("b200", "pro", tp=8, chunked_prefill_size=8192, mem_fraction_static=0.90,
                           **FI, **M314, **LL_BW), ()),
    ("b200 pro fp4 BAL (GEN-N)", mk("b200", "pro", recipe="balanced", env=mmt(4096), **dpa(8, "megamoe"),
                                    chunked_prefill_size=32768, swa_full_tokens_ratio=0.1, mem_fraction_static=0.92,
                                    cuda_graph_max_bs=256, **M112), ()),
    ("b300 pro fp4 BAL", mk("b300", "pro", recipe="balanced", **dpa(8, "none"), **FI, chunked_prefill_size=32768,
                            swa_full_tokens_ratio=0.1, mem_fraction_static=0.92, cuda_graph_max_bs=256,
                            disable_flashinfer_autotune=True, **M112), ()),
    ("b200 pro fp4 HT", mk("b200", "pro", recipe="max-throughput", env=mmt(8320), **dpa(8, "megamoe"),
                           mem_fraction_static=0.835, cuda_graph_max_bs=544, swa_full_tokens_ratio=0.075,
                           chunked_prefill_size=65536, tokenizer_worker_num=8, enable_prefill_delayer=True), ()),
    ("gb200 pro fp4 LL", mk("gb200", "pro", nodes=2, env={**MNNVL, **dd(256)}, tp=8, chunked_prefill_size=8192,
                            mem_fraction_static=0.90, **FI, **M314, **LL_BW), ()),
    ("gb200 pro fp4 BAL", mk("gb200", "pro", "fp4", "balanced", nodes=2, env={**MNNVL, **dd(256)}, **dpa(8),
                             mem_fraction_static=0.78, cuda_graph_max_bs=64, max_running_requests=128, **M112), ()),
    ("gb200 pro fp4 HT", mk("gb200", "pro", "fp4", "max-throughput", nodes=2, env={**MNNVL, **mmt(8320)},
                            **dpa(8, "megamoe"), mem_fraction_static=0.78, cuda_graph_max_bs=64,
                            max_running_requests=256), ()),
    ("gb300 pro fp4 LL", mk("gb300", "pro", tp=4, chunked_prefill_size=8192, mem_fraction_static=0.90,
                            **FI, **M314, **LL_BW), ()),
    ("gb300 pro fp4 BAL", mk("gb300", "pro", recipe="balanced", env=dd(256), **dpa(4), **M112,
                             mem_fraction_static=0.9, cuda_graph_max_bs=128, max_running_requests=256,
                             deepep_num_sms=96), ()),
    ("gb300 pro fp4 HT", mk("gb300", "pro", recipe="max-throughput", env=mmt(8320), **dpa(4, "megamoe"),
                            mem_fraction_static=0.9, cuda_graph_max_bs=128, max_running_requests=256), ()),
    ("b200 pro nvfp4 LL", mk("b200", "pro", "nvfp4", tp=8, moe_runner="flashinfer_trtllm_routed",
                             chunked_prefill_size=8192, **M314, **LL_BW), ()),
    ("h200 flash fp8 LL", mk("h200", quant="fp8", tp=4, gpn=4, env=FP8X, **M314), ()),
    ("h200 flash fp8 BAL", mk("h200", quant="fp8", recipe="balanced", gpn=4, env={**FP8X, **dd(256)}, **dpa(4),
                              **M112, cuda_graph_max_bs=128, max_running_requests=128, deepep_num_sms=96), ()),
    ("h200 flash fp8 HT", mk("h200", quant="fp8", recipe="max-throughput", gpn=4, env={**FP8X, **dd(256)},
                             **dpa(4), cuda_graph_max_bs=128, max_running_requests=256, deepep_num_sms=96), ()),
    # recipes §7 #4: 0.88 leaves no KV room for Pro-FP8 on H200 (needs ≥ 0.9113, 0.9335 with MTP)
    ("h200 pro fp8 LL", mk("h200", "pro", "fp8", nodes=2, env={**FP8X, **dd(128)}, **dpa(16),
                           cuda_graph_max_bs=8, max_running_requests=32, mem_fraction_static=0.88, **M314),
     ("KV-NO-ROOM",)),
    ("h200 pro fp8 BAL", mk("h200", "pro", "fp8", "balanced", nodes=2, env={**FP8X, **dd(128)}, **dpa(16),
                            cuda_graph_max_bs=8, max_running_requests=32, mem_fraction_static=0.88, **M112),
     ("KV-NO-ROOM",)),
    ("h200 pro fp8 HT", mk("h200", "pro", "fp8", "max-throughput", nodes=2, env={**FP8X, **dd(128)}, **dpa(16),
                           cuda_graph_max_bs=128, max_running_requests=256, mem_fraction_static=0.88),
     ("KV-NO-ROOM",)),
    ("h200 flash fp4 LL", mk("h200", tp=4, gpn=4, moe_runner="marlin", **M314), ()),
    ("h200 flash fp4 HT", mk("h200", recipe="max-throughput", tp=4, gpn=4, moe_runner="marlin"), ()),
    ("h200 pro fp4 BAL", mk("h200", "pro", recipe="balanced", tp=8, **FI, mem_fraction_static=0.88, **M112), ()),
    ("h100 flash fp4 LL", mk("h100", tp=8, moe_runner="marlin", **M314), ()),
    ("h100 pro fp4 LL", mk("h100", "pro", nodes=2, env={"SGLANG_SHARED_EXPERT_TP1": "1"}, tp=16,
                           moe_runner="marlin", mem_fraction_static=0.9, cuda_graph_max_bs=8,
                           max_running_requests=32, **M314), ()),
]
