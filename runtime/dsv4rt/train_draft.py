"""Distil the MTP draft head from the target's own greedy outputs (`dsv4ctl runtime train-draft`).

EAGLE's recipe: the target generates; the draft head learns, at each position t, to predict the
token the target decodes after x_{t+1} (cross-entropy against x_{t+2} of its greedy continuation, or
its argmax at t+1 inside the prompt) from the target's final streams h_t and the token x_{t+1}, and to
reproduce the streams h_{t+1} themselves (smooth L1), so
that a chain can feed its own output streams to the next step (engine/speculative.py). Only `mtp.*`
is trained; the shared embedding and head stay the target's. The trained layer is quantized back into
the checkpoint's format (FP8 / FP4 like `make-checkpoint`), and the acceptance is measured on fresh
prompts through the engine itself, before and after, from the files as written.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from dsv4rt.checkpoint.make import _encode, _shard_of
from dsv4rt.ops import registry
from dsv4rt.model import CachedModule

log = logging.getLogger(__name__)
FEATURE_WEIGHT = 0.1  # EAGLE's weight of the feature regression against the token loss


@dataclass
class DraftData:
    ids: torch.Tensor  # [N, L] prompt + the target's greedy continuation
    hidden: torch.Tensor  # [N, L, n, d] the target's final streams
    picks: torch.Tensor  # [N, L] the target's argmax at each position (the full-sequence pass)
    prompt_len: int = 2

    def targets(self) -> torch.Tensor:
        """[N, L-1]: at position t the token after next: x_{t+2} where the target decoded it, the pick at
        t+1 inside the prompt. In bfloat16 the full-sequence pass's pick can differ from what decoding
        emitted at a near-tie; the head must learn the decoded continuation, which serving reproduces."""
        out = self.picks[:, 1:].clone()
        out[:, self.prompt_len - 2 : -1] = self.ids[:, self.prompt_len :]
        return out


@contextmanager
def reference_kernels():
    """Autograd needs the PyTorch reference ops: GPU kernels (Triton) have no backward."""
    with registry.scoped():
        for impls in registry._REGISTRY.values():
            impls[:] = [f for f in impls if f.backend == "reference"] or impls
        registry._BEST.clear()
        registry._NEXT.clear()
        yield


def random_prompts(n: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, vocab, (n, length), generator=g)  # 0/1 are BOS/EOS


@torch.no_grad()
def generate(model, prompts: torch.Tensor, new_tokens: int) -> DraftData:
    """The target's greedy continuation of each prompt, then one pass over the whole sequence for its
    streams and picks (the same values decoding saw, up to the prefill path's rounding)."""
    dev = model.embed.weight.device
    n, p = prompts.shape
    model.allocate_cache(n, p + new_tokens)
    slots, ids = torch.arange(n, device=dev), prompts.to(dev)
    logits = model(ids, torch.zeros(n, dtype=torch.long, device=dev), slots)
    for i in range(new_tokens):
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
        if i + 1 < new_tokens:
            logits = model(ids[:, -1:], torch.full((n,), p + i, device=dev), slots)
    return _streams(model, ids, p)


@torch.no_grad()
def _streams(model, ids: torch.Tensor, prompt_len: int) -> DraftData:
    """One pass over whole sequences ids [N, L]: the target's final streams and picks at every position."""
    n, length = ids.shape
    model.allocate_cache(n, length)
    zeros = torch.zeros(n, dtype=torch.long, device=ids.device)
    logits, hidden = model(ids, zeros, torch.arange(n, device=ids.device), return_all_logits=True, return_hidden=True)
    return DraftData(ids, hidden, logits.argmax(-1), prompt_len)


SERVED_HEADROOM = 8  # a served engine's context: prompt + new tokens + this (benchmarks/gpu_mtp.py's too)


def serving_engine(model, steps: int, batches: tuple[int, ...], prompt_len: int, new_tokens: int):
    """The engine benchmarks/gpu_mtp.py times: CUDA graphs at exactly `batches` (on a GPU), every prompt
    of a batch prefilled in one step, MTP off (steps 0) or speculative with `steps` drafts."""
    from dsv4rt.engine.config import EngineConfig
    from dsv4rt.engine.engine import build_engine

    dev = model.embed.weight.device.type
    spec = {"speculative_algorithm": "EAGLE", "speculative_num_steps": steps} if steps else {}
    cfg = EngineConfig(model_path="-", device=dev, max_running_requests=max(batches),
                       chunked_prefill_size=max(batches) * prompt_len, cuda_graph_bs=tuple(batches),
                       cuda_graph_max_bs=max(batches), cuda_graphs=dev == "cuda", **spec)
    return build_engine(cfg, model, prompt_len + new_tokens + SERVED_HEADROOM)


WARM_UP_TOKENS = 8  # a served batch is first decoded this far (the benchmark's warm-up), then in full


def greedy_outputs(eng, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """Greedy continuations of `prompts`, served together by `eng` (ignoring EOS)."""
    from dsv4rt.engine.sequence import SamplingParams, Sequence

    seqs = [Sequence(p, SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)) for p in prompts]
    for s in seqs:
        eng.add(s)
    while eng.scheduler.has_work:
        eng.step()
    return [s.output_ids for s in seqs]


def served_outputs(eng, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """`greedy_outputs` after the benchmark's warm-up run of the same batch: the full run then reuses
    the prompts' cached prefix as every timed run does (its first token is decoded from the last prompt
    token alone, which in bfloat16 may differ from the whole prompt's prefill). The acceptance counters
    count the full run only."""
    from dsv4rt.engine.speculative import SpecStats

    greedy_outputs(eng, prompts, WARM_UP_TOKENS)
    if eng.runner.spec is not None:
        eng.runner.spec.stats = SpecStats(eng.runner.spec.steps)
    return greedy_outputs(eng, prompts, new_tokens)


def generate_served(model, prompts: torch.Tensor, cfg: "DistilConfig") -> tuple[DraftData, dict]:
    """The continuations each served configuration decodes (`served_steps` × `served_batches`: the
    first b prompts as one batch of b), then their streams -> (data, {(steps, b): continuations}).
    In bfloat16 a random checkpoint's next token is a near-tie often enough that a batch's kernels
    (a GEMV for one row, a GEMM for several) pick another one within a few tokens; the speculative
    engine's picks barely depend on its drafts (each verify row is computed alone), so what a
    configuration decodes is what it decodes again when timed."""
    if max(cfg.served_batches) > len(prompts):
        raise ValueError(f"a served batch of {max(cfg.served_batches)} needs as many prompts (seqs is {len(prompts)})")
    outs = {}
    for steps in cfg.served_steps:
        eng = serving_engine(model, steps, cfg.served_batches, cfg.prompt_len, cfg.new_tokens)
        for b in cfg.served_batches:
            outs[steps, b] = served_outputs(eng, prompts[:b].tolist(), cfg.new_tokens)
        del eng
    rows = {tuple(p) + tuple(o) for (_, b), got in outs.items() for p, o in zip(prompts[:b].tolist(), got)}
    ids = torch.tensor(sorted(r for r in rows if len(r) == cfg.prompt_len + cfg.new_tokens))
    return _streams(model, ids.to(model.embed.weight.device), cfg.prompt_len), outs


def draft_loss(model, data: DraftData, rows: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Loss of the MTP layer on sequences `rows` -> (loss, share of positions it predicts right)."""
    ids, hidden, target = data.ids[rows], data.hidden[rows], data.targets()[rows]
    n, length = ids.shape
    for mod in model.mtp.modules():  # fresh cache buffers: the last step's graph must not leak in
        if isinstance(mod, CachedModule):
            mod.allocate(n, length, ids.device, model.embed.weight.dtype)
    slots = torch.arange(n, device=ids.device)
    logits, streams = model.mtp_step(ids[:, 1:], hidden[:, :-1], torch.zeros_like(slots), slots, True)
    token = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
    scale = hidden[:, 1:].float().abs().mean()
    feature = torch.nn.functional.smooth_l1_loss(streams.float() / scale, hidden[:, 1:].float() / scale)
    right = (logits.argmax(-1) == target).float().mean().item()
    return token + FEATURE_WEIGHT * feature, right


def trainable(mtp) -> list[torch.Tensor]:
    """The MTP layers' weights as the forward reads them: the stacked matrices of the fused input
    projections and of the experts (whose parameters are row views into them, layers/fused.py), and
    every other parameter itself. Call before any inference-mode forward, which would stack them as
    inference tensors."""
    leaves, covered = [], set()
    for block in mtp:
        block.stack_weights()
        if block.attn.project.weight is not None:
            leaves.append(block.attn.project.weight)
            covered |= {id(lin.weight) for lin in block.attn.project.linears}
        leaves += list(block.ffn.stacked_weights())
        covered |= {id(p) for e in [*block.ffn.experts, block.ffn.shared_experts] for p in e.parameters()}
    return leaves + [p for p in mtp.parameters() if id(p) not in covered]


def train(model, data: DraftData, steps: int, batch: int, lr: float, seed: int) -> list[tuple[int, float, float]]:
    """AdamW on `mtp.*` only -> (step, loss, share right) every tenth of the run."""
    params = trainable(model.mtp)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    model.allocate_cache(batch, data.ids.shape[1])  # the model's slot count (the MTP's buffers are renewed per step)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    curve = []
    with reference_kernels(), torch.enable_grad():
        for step in range(steps):
            rows = torch.randperm(data.ids.shape[0], generator=g)[:batch].to(data.ids.device)
            loss, right = draft_loss(model, data, rows)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if step % max(1, steps // 10) == 0 or step == steps - 1:
                curve.append((step, loss.item(), right))
                log.info("step %d: loss %.4f, right %.3f", step, curve[-1][1], right)
    for p in params:
        p.requires_grad_(False)
    return curve


def write_draft(model, src: Path, out: Path) -> Path:
    """The checkpoint at `src` with the trained MTP layer, in `out` (may be `src`): the MTP shards
    re-encoded, every other file copied; each file written beside its target and renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    state = {f"mtp.{k}": v.detach().cpu().float() for k, v in model.mtp.state_dict().items()}
    shards: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in state.items():
        shards.setdefault(_shard_of(name), {}).update(_encode(name, value))
    for f in src.iterdir():
        if f.is_file() and f.name not in shards and src.resolve() != out.resolve():
            shutil.copy2(f, out / f.name)
    for file, tensors in shards.items():
        tmp = out / f".{file}.{os.getpid()}"
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        tmp.replace(out / file)
    return out


@dataclass(frozen=True)
class DistilConfig:
    seqs: int = 64  # training sequences the target generates
    prompt_len: int = 16
    new_tokens: int = 96
    steps: int = 300
    batch: int = 16
    lr: float = 2e-3
    spec_steps: int = 3  # the chain length the acceptance is measured at
    eval_seqs: int = 8
    seed: int = 0
    # train on what these served configurations decode (`generate_served`); empty: `generate`'s eager batch
    served_steps: tuple[int, ...] = ()
    served_batches: tuple[int, ...] = ()


def measure(model, prompts: torch.Tensor, cfg: DistilConfig, expect: list[list[int]] | None = None) -> dict:
    """Greedy decoding of `prompts` as one batch through the served engine with cfg.spec_steps drafts
    -> its acceptance; with `expect` (the continuations trained on) also `same_prefix`: the mean share
    of each output before its first token that differs from them (past it the head has seen nothing)."""
    eng = serving_engine(model, cfg.spec_steps, cfg.served_batches or (len(prompts),), cfg.prompt_len, cfg.new_tokens)
    got = served_outputs(eng, prompts.tolist(), cfg.new_tokens)
    stats = eng.runner.spec.stats
    out = {"accept_length": round(stats.accept_length, 4),
           "acceptance_rates": [round(r, 4) for r in stats.acceptance_rates()]}
    if expect is not None:
        out["same_prefix"] = round(sum(_same_prefix(g, e) for g, e in zip(got, expect)) / len(got) / cfg.new_tokens, 4)
    return out


def _same_prefix(got: list[int], want: list[int]) -> int:
    return next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))


def distil(model_dir: Path, out: Path, cfg: DistilConfig, device: str = "cpu") -> dict:
    """Generate with the target in its serving dtype (bfloat16 on a GPU, float32 on a CPU), train the
    MTP layer in float32, write it, reload from `out` and measure -> a report: the acceptance before and
    after, on held-out prompts and on the training prompts (which the head has seen)."""
    from dsv4rt.checkpoint.load import load_model

    serving = torch.float32 if device == "cpu" else torch.bfloat16
    target, args = load_model(model_dir, device=device, dtype=serving)
    if not args.n_mtp_layers:
        raise ValueError(f"{model_dir}: the checkpoint has no MTP layer to train")
    trainable(target.mtp)  # stacked now, outside the engine's inference mode (the CPU trains this model)
    held_out = random_prompts(cfg.eval_seqs, cfg.prompt_len, args.vocab_size, cfg.seed + 1)
    prompts = random_prompts(cfg.seqs, cfg.prompt_len, args.vocab_size, cfg.seed)
    seen = prompts[: cfg.eval_seqs]
    before = {"held_out": measure(target, held_out, cfg), "seen": measure(target, seen, cfg)}
    if cfg.served_batches:
        data, outs = generate_served(target, prompts, cfg)
        expect = outs.get((cfg.spec_steps, cfg.eval_seqs))
    else:
        data = generate(target, prompts, cfg.new_tokens)
        expect = data.ids[: cfg.eval_seqs, cfg.prompt_len :].tolist()
    student = target
    if serving != torch.float32:
        del target
        student = load_model(model_dir, device=device)[0]
        data = DraftData(data.ids, data.hidden.float(), data.picks, data.prompt_len)
    # AdamW moves a weight by about lr a step; the linears are drawn with std fan_in^-0.5, so lr (set for
    # tiny's dim 256) is scaled to the model's: at mini's 2048 the unscaled step rewrote the layer
    curve = train(student, data, cfg.steps, cfg.batch, cfg.lr * (256 / args.dim) ** 0.5, cfg.seed)
    fit = _fit(student, data, cfg.eval_seqs)
    write_draft(student, Path(model_dir), Path(out))
    del student, data
    served = load_model(out, device, serving)[0]
    after = {"held_out": measure(served, held_out, cfg), "seen": measure(served, seen, cfg, expect)}
    return {"before": before, "after": after, "curve": curve, "fit_float32": fit, "out": str(out),
            "config": cfg.__dict__}


def _fit(model, data: DraftData, n: int) -> float:
    """Share of the first n training sequences' positions the trained float32 head predicts right
    (before the checkpoint's FP8/FP4 encoding and the serving dtype)."""
    with reference_kernels(), torch.no_grad():
        return draft_loss(model, data, torch.arange(n, device=data.ids.device))[1]
