"""`dsv4ctl runtime ...`: the included V4 runtime's offline tools (random checkpoints, greedy generate).

torch and dsv4rt are imported inside the command functions only, so `dsv4ctl plan` never loads torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dsv4ctl import console
from dsv4ctl.errors import UserError

runtime_app = typer.Typer(help="The included V4 runtime: random checkpoints, greedy generation, draft heads.",
                          no_args_is_help=True)


def _parse_ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"not a comma-separated list of integers: {text!r}", where="--prompt-ids",
                        fix="pass e.g. --prompt-ids 1,2,3") from None
    if not ids:
        raise UserError("no token ids given", where="--prompt-ids", fix="pass e.g. --prompt-ids 1,2,3")
    return ids


@runtime_app.command("make-checkpoint")
def make_checkpoint(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the checkpoint into.")],
    preset: Annotated[str, typer.Option("--preset", help="tiny (CPU tests) or mini (GPU benchmark).")] = "tiny",
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed and device, same files.")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, or cuda: draws mini's weights in seconds "
                                                         "(other values than the CPU's for a seed).")] = "cpu",
) -> None:
    """Write a random V4 checkpoint in the official format, with tokenizer and generation config."""
    import torch

    from dsv4rt.checkpoint.make import PRESETS, write_checkpoint

    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'", where="--preset", fix=f"use one of: {', '.join(PRESETS)}")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise UserError(f"device '{device}' is not available here", where="--device", fix="use --device cpu")
    write_checkpoint(out, preset, seed, device)
    console.err.print(f"wrote {preset} checkpoint to {out}")


@runtime_app.command("generate")
def generate(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint directory (config.json + safetensors).")],
    prompt_ids: Annotated[str, typer.Option("--prompt-ids", help="Comma-separated prompt token ids.")],
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 16,
    logits_out: Annotated[Path | None, typer.Option("--logits-out", help="Save the last logits (.npy).")] = None,
    device: Annotated[str, typer.Option("--device")] = "cpu",
) -> None:
    """Greedy continuation of --prompt-ids; prints the new token ids as JSON."""
    ids = _parse_ids(prompt_ids)
    tokens, logits = _run_generate(model, ids, max_new_tokens, device)
    if logits_out is not None:
        import numpy as np

        np.save(logits_out, logits.float().cpu().numpy())
    print(json.dumps(tokens))


def _run_generate(model_dir: Path, ids: list[int], max_new_tokens: int, device: str):
    from dsv4rt.checkpoint.load import CheckpointError, load_model
    from dsv4rt.config import ConfigError
    from dsv4rt.generate import greedy_generate

    try:
        model, args = load_model(model_dir, device=device)
    except (CheckpointError, ConfigError) as e:
        raise UserError(str(e), where=str(model_dir)) from None
    bad = [i for i in ids if not 0 <= i < args.vocab_size]
    if bad:
        raise UserError(f"token ids {bad} outside the vocabulary [0, {args.vocab_size})", where="--prompt-ids")
    return greedy_generate(model, ids, max_new_tokens, eos_id=args.eos_token_id)


@runtime_app.command("train-draft")
def train_draft(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint directory with an MTP layer.")],
    out: Annotated[Path, typer.Option("--out", help="Where the checkpoint with the distilled MTP layer goes "
                                                    "(may be --model: only its MTP shard is rewritten).")],
    seqs: Annotated[int, typer.Option("--seqs", min=1, help="Sequences the target generates.")] = 64,
    new_tokens: Annotated[int, typer.Option("--new-tokens", min=2, help="Tokens generated per sequence.")] = 96,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps.")] = 300,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Sequences per training step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", min=0.0)] = 2e-3,
    spec_steps: Annotated[int, typer.Option("--spec-steps", min=1, max=7, help="Draft chain length measured.")] = 3,
    eval_seqs: Annotated[int, typer.Option("--eval-seqs", min=1, help="Prompts the acceptance is measured on.")] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    fmt: Annotated[str, typer.Option("--format", "-f", help="rich | json")] = "rich",
) -> None:
    """Distil the MTP draft head from the target's own greedy outputs (EAGLE-style); report the
    acceptance measured through the engine before and after, from the files written."""
    if fmt not in ("rich", "json"):
        raise UserError(f"unknown format '{fmt}'", where="--format", fix="use rich or json")
    report = _run_distil(model, out, device, dict(seqs=seqs, new_tokens=new_tokens, steps=steps, batch=batch,
                                                  lr=lr, spec_steps=spec_steps, eval_seqs=eval_seqs, seed=seed))
    if fmt == "json":
        console.emit_data(report, "json")
        return
    from rich.table import Table

    table = Table(title=f"draft head, greedy, {spec_steps} steps")
    for col in ("", "prompts", "accept length", "acceptance per position"):
        table.add_column(col)
    for when in ("before", "after"):
        for prompts, r in report[when].items():
            table.add_row(when, prompts.replace("_", "-"), f"{r['accept_length']:.3f}",
                          ", ".join(f"{x:.2f}" for x in r["acceptance_rates"]))
    console.out.print(table)
    console.err.print(f"wrote {report['out']}")


def _run_distil(model_dir: Path, out: Path, device: str, kw: dict) -> dict:
    import torch

    from dsv4rt.checkpoint.load import CheckpointError
    from dsv4rt.config import ConfigError
    from dsv4rt.train_draft import DistilConfig, distil

    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise UserError(f"device '{device}' is not available here", where="--device", fix="use --device cpu")
    try:
        return distil(model_dir, out, DistilConfig(**kw), device)
    except (CheckpointError, ConfigError, ValueError, OSError) as e:
        raise UserError(str(e), where=str(model_dir), fix="pass a checkpoint with an MTP layer") from None


def register(app: typer.Typer) -> None:
    """Add the `runtime` sub-app to the root app."""
    app.add_typer(runtime_app, name="runtime")
