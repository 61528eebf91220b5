"""Bytes one decode step of a dsv4rt `Transformer` must read from HBM: the roofline's numerator.

    step_bytes(B) = Σ_layers [ dense(layer) + U_layer(B) · expert_bytes ] + head + B · (embed_row + state(ctx))

dense(layer): every parameter of the layer that is not a routed expert (attention, compressor,
indexer, norms, mHC, gate, shared expert); U_layer(B): distinct routed experts the B rows pick in
that layer (measured from the router, or expected E·(1 − (1 − k/E)^B) for uniform routing);
head: the vocab projection, final norm and hc_head; state(ctx): per row, the window ring, the
visible compressed entries (CSA every 4 tokens but at most the indexer's top-k of them, every indexer
key, HCA every 128) and the compressor rings, averaged over steps: a ring is read whole only where a
block ends (1 step in the ratio; `decode_cache` pools nowhere else). The MTP layer is not run by plain
decode and is left out. Each byte is counted once (a perfect cache of one step).
Where the cache holds no more compressed entries than the indexer's top-k, the indexer selects all
of them and is skipped (`Indexer.selects_all`): its query projection and its keys are not read then.
"""

from __future__ import annotations

import torch


def _nbytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def indexer_skipped(attn) -> bool:
    """True where the allocated cache has no more entries than the top-k (needs `allocate_cache`)."""
    return attn.indexer is not None and attn.indexer.selects_all(attn.compressor.entries.shape[1] - 1)


def layer_bytes(layer) -> tuple[int, int]:
    """(dense bytes, bytes of one routed expert) of one Block."""
    unread = {id(p) for p in layer.ffn.experts.parameters()}
    if indexer_skipped(layer.attn):
        unread.add(id(layer.attn.indexer.wq_b.weight))
    dense = _nbytes(p for p in layer.parameters() if id(p) not in unread)
    return dense, _nbytes(layer.ffn.experts[0].parameters())


def expected_experts(batch: int, n_experts: int, top_k: int) -> float:
    return n_experts * (1 - (1 - top_k / n_experts) ** batch)


def state_bytes_per_row(model, ctx: int) -> int:
    """Decode state one row reads at context length ctx (window + visible entries + rings, 1 step in ratio)."""
    total = 0
    for layer in model.layers:
        attn = layer.attn
        total += attn.win_kv[0].numel() * attn.win_kv.element_size()
        for comp in (attn.compressor, getattr(attn.indexer, "compressor", None)):
            if comp is None:
                continue
            row = comp.entries.shape[-1] * comp.entries.element_size()
            visible = ctx // comp.ratio
            if comp is attn.compressor and attn.indexer is not None:
                visible = min(visible, attn.indexer.topk)  # attention reads the selected entries only
            elif comp is not attn.compressor and indexer_skipped(attn):
                visible = 1  # a skipped indexer only writes its new entry
            total += visible * row
            total += 2 * comp.ring_kv[0].numel() * comp.ring_kv.element_size() // comp.ratio
    return total


def step_bytes(model, batch: int, ctx: int, experts_used: list[float] | None = None) -> dict:
    """Byte count of one decode step; experts_used: distinct experts per layer (None: expected)."""
    a = model.args
    weights = 0
    for i, layer in enumerate(model.layers):
        dense, expert = layer_bytes(layer)
        used = experts_used[i] if experts_used else expected_experts(batch, a.n_routed_experts, a.n_activated_experts)
        weights += dense + used * expert
    weights += _nbytes(model.head.parameters()) + _nbytes(model.norm.parameters())
    weights += _nbytes(p for name, p in model.named_parameters(recurse=False) if name.startswith("hc_head"))
    weights += batch * model.embed.weight[0].numel() * model.embed.weight.element_size()
    state = batch * state_bytes_per_row(model, ctx)
    return {"weights": int(weights), "state": int(state), "total": int(weights + state)}


class RouterProbe:
    """Records the distinct routed experts each MoE layer picks (forward hooks on the gates)."""

    def __init__(self, model):
        self.used: list[int] = [0] * len(model.layers)
        self._hooks = [layer.ffn.gate.register_forward_hook(self._hook(i)) for i, layer in enumerate(model.layers)]

    def _hook(self, i: int):
        def fn(_mod, _inp, out):
            self.used[i] = int(torch.unique(out[1]).numel())
        return fn

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
