"""The model's ops: one named function per op, its shapes in its docstring, its PyTorch reference as
its body (the numerics), and CUDA backends (`dsv4rt/kernels/`) registered against it.

The model calls `ops.<name>(...)`; that runs the best implementation registered for the arguments'
device (`registry.get`): the reference everywhere, a backend where it imported, fits the hardware and
passed its self-check on this machine; backends hand shapes they do not take to the next one.
`ops.<name>.reference` is the reference itself (the backends' self-checks and the tests compare with it).

| family | ops | CUDA backends (`kernels/`) |
|---|---|---|
| `dense` | `rmsnorm`, `linear`, `norm_linear`, `fp32_linear` | `triton_gemv` (one row), `cuda_ops` |
| `mhc` | `hc_split_sinkhorn`, `hc_pre(_x)`, `hc_post(_linear)`, `hc_post_pre` | `triton_mhc`, `triton_mhc_post` |
| `attention` | `sink_attention`, `decode_attention`, `indexer_topk` | `triton_attention` (decode) |
| `moe` | `moe_route`, `moe_experts` | `triton_route`, `triton_moe` (+ `triton_moe_gemv`) |
| `cache` | `decode_cache` (a decode token's cache writes) | `triton_cache` |

`rope` holds RoPE/YaRN as plain functions (not ops); `registry` the dispatch.
"""

from dsv4rt.ops.attention import decode_attention, indexer_topk, sink_attention
from dsv4rt.ops.cache import decode_cache
from dsv4rt.ops.dense import fp32_linear, linear, norm_linear, rmsnorm
from dsv4rt.ops.mhc import hc_post, hc_post_linear, hc_post_pre, hc_pre, hc_pre_x, hc_split_sinkhorn
from dsv4rt.ops.moe import moe_experts, moe_route

__all__ = [
    "decode_attention", "decode_cache", "fp32_linear", "hc_post", "hc_post_linear", "hc_post_pre", "hc_pre",
    "hc_pre_x", "hc_split_sinkhorn", "indexer_topk", "linear", "moe_experts", "moe_route", "norm_linear",
    "rmsnorm", "sink_attention",
]
