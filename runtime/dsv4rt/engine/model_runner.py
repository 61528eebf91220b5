"""ModelRunner: scheduled sequences -> input tensors -> model.forward -> sampled tokens.

Only this module and the sampler touch torch. The model owns static per-slot cache buffers
(`allocate_cache`); the runner sizes them from a byte budget and feeds `forward(ids, start_pos,
slots)` with one call per distinct prefill chunk length (rows in one call share T) plus one decode
call with T=1 for all decoding rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import torch

from dsv4rt.engine.cuda_graphs import horizon_for
from dsv4rt.engine.sampler import SampleResult, make_generator
from dsv4rt.engine.scheduler import ScheduledBatch
from dsv4rt.engine.sequence import Sequence
from dsv4rt.engine.speculative import SpecDecoder
from dsv4rt.ops import registry

log = logging.getLogger(__name__)
_CPU_DEFAULT_KV_BYTES = 2 << 30  # a CPU host has no "static fraction"; 2 GiB unless told otherwise


class KVBudgetError(RuntimeError):
    """The byte budget cannot hold even one slot at the requested context length."""


def kv_budget_bytes(device: torch.device, mem_fraction_static: float | None, kv_budget: int | None) -> int:
    """Bytes the KV/state pool may take: an explicit budget, else the GPU's static fraction minus
    what is already allocated (weights), else the CPU default."""
    if kv_budget is not None:
        return kv_budget
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        frac = mem_fraction_static if mem_fraction_static is not None else 0.85
        return max(0, int(total * frac) - torch.cuda.memory_allocated(device))
    return _CPU_DEFAULT_KV_BYTES


def size_slots(bytes_per_slot: int, budget: int, max_running: int, context_length: int) -> int:
    num = min(max_running, budget // max(bytes_per_slot, 1))
    if num < 1:
        raise KVBudgetError(
            f"KV/state budget {budget} B cannot hold one sequence of {context_length} tokens "
            f"({bytes_per_slot} B per slot); raise --kv-budget-bytes / --mem-fraction-static "
            f"or lower --context-length"
        )
    return num


class ModelRunner:
    GRAPH_DEVICES = ("cuda",)  # where cuda_graphs=True captures (tests replay the graphs' bodies on a CPU)

    def __init__(self, model, num_slots: int, context_length: int, device: torch.device,
                 cuda_graphs: bool = True, graph_sizes: tuple[int, tuple[int, ...] | None] | None = None,
                 spec_steps: int | None = None):
        self.model, self.device = model, device
        self.num_slots, self.context_length = num_slots, context_length
        use_graphs = cuda_graphs and torch.device(device).type in self.GRAPH_DEVICES
        # speculative rounds write up to spec_steps positions past the last one they emit; the slot after
        # the last is scratch: the graphs' padding rows decode into it, and rollbacks dump into it
        model.allocate_cache(num_slots + int(use_graphs or bool(spec_steps)),
                             context_length + (spec_steps + 1 if spec_steps else 0))
        self.sample_fn = registry.get("sampling")
        self._generators: dict[int, torch.Generator | None] = {}
        log.info("KV/state pool: %d slots x %d tokens (%d B each)", num_slots, context_length,
                 model.cache_bytes_per_slot(context_length))
        self.spec = SpecDecoder(model, spec_steps, dump_slot=num_slots) if spec_steps else None
        graphs = self._capture(num_slots, *(graph_sizes or (num_slots, None))) if use_graphs else None
        self.graphs = graphs if self.spec is None else None
        if self.spec is not None:
            self.spec.graphs = graphs

    def _capture(self, num_slots: int, max_batch: int, sizes: tuple[int, ...] | None):
        """Graphs for decode batches up to max_batch (the plan's sizes when given): plain decode steps,
        or speculative rounds; larger batches and any capture failure decode eagerly (logged)."""
        from dsv4rt.engine.cuda_graphs import DEFAULT_SIZES, DecodeGraphs
        from dsv4rt.engine.spec_graphs import SpecGraphs

        try:
            if self.spec is not None:
                graphs = SpecGraphs(self.spec, max_batch, pad_slot=num_slots, sizes=sizes or DEFAULT_SIZES)
            else:
                graphs = DecodeGraphs(self.model, max_batch, pad_slot=num_slots, sizes=sizes or DEFAULT_SIZES)
            graphs.capture(horizon_for(1, self.model.max_seq_len))  # the shortest; longer ones on first use
            return graphs
        except Exception:  # noqa: BLE001 - a capture failure costs speed, never correctness
            log.exception("CUDA graph capture failed; decoding without graphs")
            return None

    def _tensor(self, data) -> torch.Tensor:
        return torch.tensor(data, dtype=torch.long, device=self.device)

    def _horizon(self, ends) -> int:
        """The step's horizon (`cuda_graphs.horizon_for`): covers every row's last position after it."""
        return horizon_for(max(ends), self.model.max_seq_len)

    def _forward(self, rows: list[list[int]], starts: list[int], slots: list[int]) -> torch.Tensor:
        return self.model.forward(self._tensor(rows), self._tensor(starts), self._tensor(slots),
                                  horizon=self._horizon([st + len(r) for r, st in zip(rows, starts)]))

    def _prefill(self, chunks: list[tuple[Sequence, int]]) -> tuple[list[tuple[Sequence, torch.Tensor]], list]:
        """Run prompt chunks grouped by length; return logits for rows that finish their prompt, and
        what the MTP needs to follow each group when decoding speculatively (`_draft_prefill`)."""
        groups: dict[int, list[Sequence]] = defaultdict(list)
        for seq, n in chunks:
            groups[n].append(seq)
        out, follow = [], []
        for n, seqs in groups.items():
            args = [self._tensor(a) for a in ([s.prompt_ids[s.num_computed : s.num_computed + n] for s in seqs],
                                              [s.num_computed for s in seqs], [s.slot for s in seqs])]
            horizon = self._horizon([s.num_computed + n for s in seqs])
            if self.spec is None:
                logits = self.model.forward(*args, horizon=horizon)
            else:
                logits, hidden = self.model.forward(*args, return_hidden=True, horizon=horizon)
                follow.append((seqs, n, args, hidden))
            out += [(s, logits[i]) for i, s in enumerate(seqs) if s.num_computed + n == len(s.prompt_ids)]
        return out, follow

    def _draft_prefill(self, follow: list, sampled: dict[int, list]) -> None:
        """The MTP over each prompt chunk; its next token is the prompt's, or the one just sampled."""
        for seqs, n, (ids, start, slots), hidden in follow:
            nxt = [_first_token(sampled[s.seq_id]) if s.seq_id in sampled else s.prompt_ids[s.num_computed + n]
                   for s in seqs]
            self.spec.prefill(ids, self._tensor(nxt), hidden, start, slots)

    def _decode(self, seqs: list[Sequence]) -> list[tuple[Sequence, torch.Tensor]]:
        if not seqs:
            return []
        args = ([[s.output_ids[-1]] for s in seqs], [s.num_computed for s in seqs], [s.slot for s in seqs])
        if self.graphs is not None and self.graphs.size_for(len(seqs)):
            logits = self.graphs.run(*(self._tensor(a) for a in args), self._horizon([s + 1 for s in args[1]]))
        else:
            logits = self._forward(*args)
        return list(zip(seqs, logits))

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> dict[int, list[tuple[int, object]] | Exception]:
        """seq_id -> its new (token, logprob entry) pairs, in order, for every row that produced any
        this step (one a row, or 1 .. spec_steps + 1 for a speculative decoding row), or the exception
        that row's sampling raised: one bad request fails alone, not the batch."""
        out: dict[int, list[tuple[int, object]] | Exception] = {}
        if self.spec is not None and batch.decode:
            ready, gens = self._row_generators(batch.decode, out)
            if ready:
                out.update(zip((s.seq_id for s in ready), self.spec.decode(ready, gens, self.device)))
        prefilled, follow = self._prefill(batch.prefill)
        rows = ([] if self.spec is not None else self._decode(batch.decode)) + prefilled
        seqs, gens = self._row_generators([s for s, _ in rows], out)
        logits = {s.seq_id: r for s, r in rows}
        if seqs:
            out.update(self._sample([(s, logits[s.seq_id], g) for s, g in zip(seqs, gens)]))
        if follow:
            self._draft_prefill(follow, out)
        return out

    def _row_generators(self, seqs: list[Sequence], errors: dict) -> tuple[list[Sequence], list]:
        """Each row's sampling generator; a row whose generator cannot be made (e.g. a seed torch
        cannot take) goes to `errors` instead."""
        ok, gens = [], []
        for seq in seqs:
            try:
                gens.append(self._generator(seq))
                ok.append(seq)
            except Exception as e:  # noqa: BLE001
                errors[seq.seq_id] = e
        return ok, gens

    def _sample(self, rows: list) -> dict[int, list[tuple[int, object]] | Exception]:
        """One batched call; if it raises, row by row, so the error stays with its request."""
        try:
            res: SampleResult = self.sample_fn(torch.stack([r for _, r, _ in rows]),
                                               [s.params for s, _, _ in rows], [g for _, _, g in rows])
            return {s.seq_id: [(res.token_ids[i], res.logprobs[i])] for i, (s, _, _) in enumerate(rows)}
        except Exception as e:  # noqa: BLE001 - isolate, then report per request
            if len(rows) == 1:
                return {rows[0][0].seq_id: e}
            log.warning("batched sampling failed (%s); sampling row by row", e)
            return {k: v for row in rows for k, v in self._sample([row]).items()}

    def truncate(self, seq: Sequence, keep: int) -> None:
        """`seq` ended after `keep` tokens of this step's speculative span: roll its slot back to them."""
        if self.spec is not None:
            self.spec.truncate(seq.seq_id, keep)

    def _generator(self, seq: Sequence):
        if seq.seq_id not in self._generators:
            self._generators[seq.seq_id] = make_generator(seq.params.seed, self.device)
        return self._generators[seq.seq_id]

    def forget(self, seq_id: int) -> None:
        self._generators.pop(seq_id, None)


def _first_token(result) -> int:
    """The first sampled token of a row's result; 0 for a row that failed (it is ending anyway)."""
    return 0 if isinstance(result, Exception) else result[0][0]
