"""torch.compile for the decode step (opt-in, CUDA only; `compile_decode`).

A plain decode step was ~2,600 tiny kernels (docs/performance.md): the elementwise, index and copy
chains of attention, compressor, indexer and mHC. Inductor fuses those chains, so each layer's
`Block.forward` is compiled as one graph: the cache writes are plain scatters that Inductor does in
place (the decode path writes each buffer before reading it, `ops/cache.write_rows`), and the Triton
kernels (Sinkhorn, decode attention, routed experts) are torch custom ops that it calls as they are.
Dynamo shares one compiled graph across the layers of a kind (SWA/CSA/HCA × hash/score routing).
The final mHC head, norm and vocab projection (`HeadMixin._logits`) are a second compiled function:
eager, they were 27 launches of a ~300-launch step.

- Only T=1 steps use it (`Transformer.forward`): prefill shapes vary per chunk and would recompile.
- No CUDA graphs inside Inductor (`mode` never "reduce-overhead"): the engine captures the whole step
  in its own graphs (engine/cuda_graphs.py), compiled code included.
- `dynamic=None` is torch's automatic dynamic shapes: the first batch size (or cache shape) compiles
  static, the next one recompiles with symbolic sizes that then serve the others. `dynamic=False`
  compiles each batch size (and cache shape) on its own: slower to start, no symbolic-size kernels.
- Any exception from a compiled call (a failed compile) is logged once and the block goes back to
  the eager method for good; that call is re-run eagerly, so a failure costs speed, not tokens.
"""

from __future__ import annotations

import logging
import os

import torch

from dsv4rt.model import Block, HeadMixin
from dsv4rt.ops.registry import available

log = logging.getLogger(__name__)
RECOMPILE_LIMIT = 256  # layer kinds (SWA/CSA/HCA × hash/score routing) × batch sizes (static compiles)


class _Guarded:
    """Calls the compiled block; on the first failure logs why and uses `eager` from then on."""

    def __init__(self, compiled, eager, name: str):
        self.compiled, self.eager, self.name = compiled, eager, name
        self.failed: str | None = None

    def __call__(self, *args):
        if self.failed is None:
            try:
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - a compile failure must cost speed, never tokens
                self.failed = repr(e)
                log.warning("torch.compile of %s failed, decoding eagerly: %s", self.name, e)
        return self.eager(*args)


def _raise_recompile_limit() -> None:
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # renamed in torch 2.6; set whichever exists
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), RECOMPILE_LIMIT))
    if hasattr(cfg, "accumulated_recompile_limit"):
        cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 8 * RECOMPILE_LIMIT)


class CompiledDecode:
    """What `Transformer.forward` calls on T=1 steps: `block(layer, h, ids, pos, slots)` and
    `logits(model, h, norm, head, all_positions)`, each compiled and guarded."""

    def __init__(self, compile_fn):
        self.block = _Guarded(compile_fn(Block.forward), Block.forward, "block")
        self.logits = _Guarded(compile_fn(HeadMixin._logits), HeadMixin._logits, "logits")

    def failures(self) -> dict[str, str | None]:
        return {g.name: g.failed for g in (self.block, self.logits)}


def inductor_options(**overrides) -> dict:
    """Inductor's options for the decode step (`overrides` win):
    - its kernels launch with PDL where ours do (`inductor_pdl`);
    - no locality reordering: that pass moves every producer right before its consumer, and so put the
      cache writes (`decode_cache`, a chain of dependent loads) right after the input projection, where
      the wq_b GEMV launched beside them and filled HBM with its weight prefetch. In the model's order
      they run after that GEMV, beside the attention, which prefetches nothing."""
    opts = {"reorder_for_locality": False}
    if inductor_pdl():
        opts["triton.enable_pdl"] = True
    return {**opts, **overrides}


def compile_decode(model, mode: str | None = None, dynamic: bool | None = None, backend: str = "inductor",
                   allow_cpu: bool = False, options: dict | None = None) -> bool:
    """Install the compiled decode step on `model` (`model.compiled_decode`) (compilation itself happens on first use).
    Returns False, logging why, where it does not apply: a CPU model (unless `allow_cpu`, for tests
    with the cheap `aot_eager` backend) or a torch without a working torch.compile. `options` go to
    `inductor_options`."""
    if model.embed.weight.device.type != "cuda" and not allow_cpu:
        log.info("torch.compile decode not enabled: model is on %s (CUDA only)", model.embed.weight.device)
        return False
    available()  # backends import (and self-check) now, eagerly, not inside Dynamo's first trace
    for layer in model.layers:
        layer.stack_weights()
    try:
        _raise_recompile_limit()
        opts = {"dynamic": dynamic, "fullgraph": False, "backend": backend}
        if mode is not None:
            opts["mode"] = mode
        elif backend == "inductor":
            opts["options"] = inductor_options(**(options or {}))
        compiled = CompiledDecode(lambda fn: torch.compile(fn, **opts))
    except Exception as e:  # noqa: BLE001 - e.g. a torch build without dynamo: stay eager
        log.warning("torch.compile decode not enabled: %s", e)
        return False
    model.compiled_decode = compiled
    log.info("torch.compile decode installed (backend=%s, mode=%s, dynamic=%s)", backend, mode, dynamic)
    return True


def inductor_pdl() -> bool:
    """Inductor's kernels launch with PDL too (kernels/pdl.py): where our kernels do, this torch's Inductor
    can (`triton.enable_pdl`), and DSV4RT_INDUCTOR_PDL is not 0. Its kernels wait before their first
    access, so they keep pdl.py's rules."""
    import torch._inductor.config as inductor_config

    try:
        from dsv4rt.kernels import pdl
    except ImportError:  # no Triton: no Inductor GPU kernels either
        return False
    config = getattr(inductor_config, "triton", None)
    return (pdl.enabled() and hasattr(config, "enable_pdl")
            and os.environ.get("DSV4RT_INDUCTOR_PDL", "1") != "0")


def compile_failures(model) -> dict[str, str | None]:
    """{"block" / "logits": why its compile failed (None: compiled or not yet called)}, {} if not installed."""
    compiled = getattr(model, "compiled_decode", None)
    return compiled.failures() if compiled else {}
