"""benchmarks/launch_count.py: kernel launches per compiled decode step, from the Triton code
Inductor writes on a CPU. The budgets below are what the tiny model's step compiles to today: a
change that splits a fused chain (a graph break, a cat, a reduction along a strided axis) fails here
before it costs time on a GPU."""

from __future__ import annotations

import collections
import shutil
import sys
from pathlib import Path

import pytest
import torch

from dsv4rt.ops import registry
from dsv4rt.ops.registry import get

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import launch_count as lc  # noqa: E402

WRAPPER = '''
def other(): triton_poi_fused_0.run(x)
    def call(self, args):
        buf0 = empty_strided_cuda((1, 4), (4, 1), torch.float32)
        # Topologically Sorted Source Nodes: [torch.ops.dsv4rt.moe_gemv.default]
        triton_red_fused_mean_pow_0.run(arg0_1, buf0, 1, 8192, stream=raw_stream0)
        extern_kernels.mm(buf0, arg1_1, out=buf1)
        buf2 = torch.ops.dsv4rt.moe_gemv.default(buf1, arg2_1)
        assert_size_stride(buf2, (1, 4), (4, 1), 'torch.ops.dsv4rt.moe_gemv.default')
        buf3 = torch.ops.aten.topk.default(buf2, 6)
        triton_poi_fused_add_1.run(buf3, stream=raw_stream0)
'''

# launches per layer kind of the tiny model at batch 1 (64-token cache: the indexer scores and selects);
# each boundary between sub-blocks is two launches (hc_post: the post and the next pre's projection; hc_pre:
# the rest of that pre; after the attention `hc_post_linear` with wo_b inside), the attention op does q's norm
# and RoPE, and `decode_cache` every cache write
BUDGET = {"SWA/hash": 14, "HCA/hash": 14, "CSA/hash": 24, "HCA/score": 14, "CSA/score": 24}


def test_launches_reads_only_the_call_function():
    assert lc.launches(WRAPPER) == collections.Counter(triton=2, cublas=1, opaque=2, aten=1)


def test_as_on_cuda_is_undone_on_exit():
    before = registry.available()
    with lc.as_on_cuda():
        assert get("decode_attention").backend == "triton"
    assert registry.available() == before and get("decode_attention").backend == "reference"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="Inductor needs a C++ compiler for its CPU helpers")
def test_each_layer_kind_stays_within_its_launch_budget():
    torch.set_num_threads(1)
    model = lc.skeleton_model("tiny")
    for layer in model.layers:
        layer.stack_weights()
    with lc.as_on_cuda():
        rows = lc.count_step(model, batch=1, ctx=64, code_dir=None)
    torch._dynamo.reset()
    per_layer = {name.split(" ×")[0]: sum(c.values()) // int(name.split("×")[1])
                 for name, c in rows.items() if "×" in name}
    assert per_layer.keys() == BUDGET.keys()
    over = {k: (v, BUDGET[k]) for k, v in per_layer.items() if v > BUDGET[k]}
    assert not over, f"launches per layer (got, budget): {over}"
    assert sum(rows["logits (vocab; the mHC head and norm are the last block's)"].values()) == 1
    # the gather (the 4 equal streams and the positions are views)
    assert rows["embedding (eager)"] == collections.Counter(eager=1)
