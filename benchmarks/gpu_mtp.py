"""MTP speculative decoding on one GPU, side by side in one run: tokens/s with MTP off / steps 1 /
steps 3 at batch 1, 8 and 32, the measured acceptance, and a speculative round's cost against a plain
decode step.

    PYTHONPATH=runtime:benchmarks python benchmarks/gpu_mtp.py --model /tmp/mini --make \
        --draft /tmp/mini-draft --train [--json out.json]

(1) `--make` writes the mini checkpoint if absent; `--train` distils its MTP layer into --draft if absent
(dsv4rt/train_draft.py: the target decodes the prompts through this benchmark's engine in each MTP
setting and batch it times, the head learns those continuations; the report's acceptance is measured
from the files written). (2) For each MTP setting one engine (the server's path: scheduler, runner, CUDA
graphs at the batch sizes, sampler) decodes greedy requests; tokens/s counts decode steps only (after
every prompt is in), median of --repeats. The prompts are the distillation's own (the head has seen
their continuations) unless --held-out; the table says which. (3) CUDA-event times of one plain decode
step (its graph) and one speculative round (the propose and settle graphs) at each batch size, and of
the round's parts captured alone (`round_parts`).
(4) The goal: at batch 1 with 3 steps, tok/s >= 0.75 x acceptance length x the MTP-off tok/s.
Runs on a CPU too (small sizes, no graphs), which the tests use. Method: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dsv4rt.checkpoint.load import load_model
from dsv4rt.engine.sequence import SamplingParams, Sequence
from dsv4rt.engine.speculative import SpecStats
from dsv4rt.train_draft import WARM_UP_TOKENS, DistilConfig, distil, random_prompts, serving_engine


def timed_run(eng, prompts: list[list[int]], new_tokens: int) -> tuple[float, int, list[list[int]]]:
    """Greedy requests through the engine -> (decode seconds, decoded tokens, outputs); the first step
    (all prompts in one prefill) is not timed."""
    seqs = [Sequence(p, SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)) for p in prompts]
    for s in seqs:
        eng.add(s)
    eng.step()
    t0 = time.perf_counter()
    while eng.scheduler.has_work:
        eng.step()
    sec = time.perf_counter() - t0
    return sec, sum(len(s.output_ids) - 1 for s in seqs), [s.output_ids for s in seqs]


def decode_rows(a, model, steps: int, prompts: list[list[int]], log) -> list[dict]:
    eng = serving_engine(model, steps, tuple(a.batches), a.prompt_len, a.new_tokens)
    rows = []
    for bs in a.batches:
        batch = (prompts * bs)[:bs]
        timed_run(eng, batch, WARM_UP_TOKENS)  # warm-up: prefill kernels at this shape (train_draft.served_outputs)
        times, outs, stats = [], None, SpecStats(steps)
        for _ in range(a.repeats):
            if eng.runner.spec is not None:
                eng.runner.spec.stats = stats
            sec, n, outs = timed_run(eng, batch, a.new_tokens)
            times.append(n / sec)
        row = {"batch": bs, "mtp_steps": steps, "tok_s": statistics.median(times), "outputs": outs,
               "accept_length": stats.accept_length if steps else 1.0,
               "acceptance_rates": stats.acceptance_rates() if steps else []}
        log(json.dumps({k: v for k, v in row.items() if k != "outputs"}))
        rows.append(row)
    round_ms = step_costs(eng, a.batches, a.prompt_len) if a.device == "cuda" else {}
    for row in rows:
        row["graph_ms"] = round_ms.get(row["batch"])
        if steps and a.device == "cuda":
            row["parts_ms"] = round_parts(eng.runner, row["batch"], a.prompt_len, log)
    return rows


def _graph(fn) -> torch.cuda.CUDAGraph:
    """fn captured alone (after one warm-up run on a side stream)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g


@torch.inference_mode()
def round_parts(runner, bs: int, pos: int, log) -> dict[str, float]:
    """ms of each part of a round, each captured alone, on rows 0..bs-1 at `pos`: the MTP's draft chain,
    the verify (B·(k+1) decode rows), saving and restoring the rings (undo), the MTP's extend, and a
    plain decode step of B·(k+1) rows for comparison with the verify. A part that fails is left out."""
    spec, model, k1 = runner.spec, runner.model, runner.spec.span
    slots, start = torch.arange(bs, device="cuda"), torch.full((bs,), pos, device="cuda")
    ids, keep = (2 + torch.arange(bs * k1, device="cuda")).view(bs, k1), torch.ones(bs, dtype=torch.long, device="cuda")
    hidden, undo = spec.hidden[slots][:, None].expand(-1, k1, -1, -1).contiguous(), spec.undo_logs()
    parts = {"drafts": lambda: spec._chain(ids[:, 0], start, slots),
             "verify": lambda: model(ids, start, slots, return_all_logits=True, return_hidden=True, verify=True),
             "undo": lambda: [(u.save(slots, start), u.restore(keep)) for u in undo],
             "extend": lambda: model.mtp_forward(ids, hidden, start, slots, return_all_logits=True,
                                                 return_hidden=True, verify=True),
             "step_rows": lambda: model(ids.reshape(-1, 1), start.repeat_interleave(k1), slots.repeat_interleave(k1))}
    out = {}
    for name, fn in parts.items():
        try:
            out[name] = round(_event_ms(_graph(fn).replay), 4)
        except Exception as e:  # noqa: BLE001 - a diagnostic: report it, keep the table
            log(f"part {name} at batch {bs}: {type(e).__name__}: {e}")
    log(f"round parts at batch {bs} (ms): {json.dumps(out)}")
    return out


def _event_ms(fn, repeats: int = 20) -> float:
    from gpu_decode import _cuda_time  # CUDA-event timing, median after a warm-up

    return _cuda_time(fn, repeats) * 1e3


def step_costs(eng, batches: list[int], pos: int) -> dict[int, float]:
    """ms of one captured plain decode step, or of one speculative round (propose + settle replays),
    per batch size, on rows 0..bs-1 at position `pos` (the cache holds the last run's tokens)."""
    out = {bs: _graph_ms(eng.runner, bs, pos) for bs in batches}
    return {bs: ms for bs, ms in out.items() if ms is not None}


def _graph_ms(runner, bs: int, pos: int) -> float | None:
    slots, start = torch.arange(bs, device="cuda"), torch.full((bs,), pos, device="cuda")
    ids = 2 + torch.arange(bs, device="cuda")  # no random draw: nothing here may touch a generator
    graphs = runner.graphs if runner.spec is None else runner.spec.graphs
    if graphs is None:  # capture failed (logged): eager steps, not timed here
        return None
    if runner.spec is None:
        return _event_ms(lambda: graphs.run(ids[:, None], start, slots))
    keep = torch.ones(bs, dtype=torch.long, device="cuda")  # every row rolls back k positions
    ext = ids[:, None].expand(-1, runner.spec.span)
    return _event_ms(lambda: (graphs.propose(ids, start, slots), graphs.settle(ext, keep)))


def prepare(a, log) -> dict:
    if a.make and not (a.model / "config.json").is_file():
        from dsv4rt.checkpoint.make import write_checkpoint

        t0 = time.perf_counter()
        write_checkpoint(a.model, a.preset, 0, a.device)
        log(f"made {a.preset} in {time.perf_counter() - t0:.0f} s")
    if a.train and not (a.draft / "config.json").is_file():
        t0 = time.perf_counter()
        report = distil(a.model, a.draft, a.distil, a.device)
        report["seconds"] = time.perf_counter() - t0
        (a.draft / "distil.json").write_text(json.dumps(report, indent=1))
        log(f"distilled the draft head in {report['seconds']:.0f} s: {json.dumps(report['after'])}")
    path = a.draft / "distil.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def same_tokens(rows: list[dict], off: dict[int, dict]) -> None:
    """Share of greedy tokens equal to MTP off's at the same batch (on the GPU the verify's B·(k+1) rows
    round in bfloat16 unlike B rows of a plain step, so a near-tie may flip, and the rest follows)."""
    for r in rows:
        pairs = [(x, y) for o, p in zip(r["outputs"], off[r["batch"]]["outputs"]) for x, y in zip(o, p)]
        r["same_as_off"] = sum(x == y for x, y in pairs) / max(len(pairs), 1)


def _num(v: float | None, width: int, digits: int) -> str:
    return f"{v:>{width}.{digits}f}" if v is not None else f"{'-':>{width}}"


def table(res: dict) -> str:
    off = {r["batch"]: r for r in res["rows"] if r["mtp_steps"] == 0}
    lines = [f"prompts: {res['prompts']}; greedy, {res['new_tokens']} new tokens, median of {res['repeats']}",
             f"{'batch':>5} {'MTP':>4} {'tok/s':>9} {'x off':>6} {'accept':>6} {'goal':>6} {'same':>5} "
             f"{'ms/round':>8} {'x step':>6}  per-position acceptance"]
    for r in res["rows"]:
        base = off[r["batch"]]
        x = r["tok_s"] / base["tok_s"]
        goal = x / (0.75 * r["accept_length"]) if r["mtp_steps"] else None
        ms, base_ms = r.get("graph_ms"), base.get("graph_ms")
        lines.append(f"{r['batch']:>5} {r['mtp_steps'] or 'off':>4} {r['tok_s']:>9,.1f} {x:>6.2f} "
                     f"{r['accept_length']:>6.2f} {_num(goal, 6, 2)} {r['same_as_off']:>5.2f} "
                     f"{_num(ms, 8, 3)} {_num(ms / base_ms if ms and base_ms else None, 6, 2)}  "
                     + " ".join(f"{v:.2f}" for v in r["acceptance_rates"]))
    lines.append("goal = (tok/s / off) / (0.75 x accept): >= 1 meets the issue's goal; x step = a round's "
                 "graphs (drafts + verify + rollback + extend) / one plain decode step's graph")
    return "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--draft", type=Path, required=True, help="checkpoint with the distilled MTP layer")
    p.add_argument("--make", action="store_true", help="write the --preset checkpoint if absent")
    p.add_argument("--train", action="store_true", help="distil the draft head into --draft if absent")
    p.add_argument("--preset", default="mini")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--mtp-steps", default="0,1,3")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--held-out", action="store_true", help="prompts the draft head has not seen")
    p.add_argument("--distil", default="", help="DistilConfig fields, e.g. seqs=64,steps=300")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    a.batches, a.mtp_steps = [int(x) for x in a.batches.split(",")], [int(x) for x in a.mtp_steps.split(",")]
    a.dtype = "bfloat16" if a.device == "cuda" else "float32"
    kw = dict(part.split("=") for part in a.distil.split(",") if part)
    types = {f: type(v) for f, v in DistilConfig().__dict__.items()}
    served = {"served_steps": tuple(s for s in a.mtp_steps if s), "served_batches": tuple(a.batches)}
    a.distil = DistilConfig(**{"new_tokens": a.new_tokens, "prompt_len": a.prompt_len, **served,
                               **{k: types[k](v) for k, v in kw.items()}})
    return a


def main(argv=None) -> dict:
    a = parse(argv)
    log = lambda msg: print(f"[gpu_mtp] {msg}", flush=True)  # noqa: E731
    res = {"distil": prepare(a, log), "new_tokens": a.new_tokens, "repeats": a.repeats, "rows": []}
    model, args = load_model(a.draft, device=a.device, dtype=getattr(torch, a.dtype))
    seed = a.distil.seed + (1 if a.held_out else 0)
    prompts = random_prompts(max(a.batches), a.prompt_len, args.vocab_size, seed).tolist()
    res["prompts"] = "held out (unseen by the draft head)" if a.held_out else "the distillation's own"
    for steps in a.mtp_steps:
        res["rows"] += decode_rows(a, model, steps, prompts, log)
    same_tokens(res["rows"], {r["batch"]: r for r in res["rows"] if r["mtp_steps"] == 0})
    print(table(res), flush=True)
    for r in res["rows"]:
        r.pop("outputs")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
