"""Workloads: the prompts a load run sends, built offline and deterministically from a seed.

Lengths are tokens of the served model's tokenizer when one is given (`tokens.token_text`: random
ids → text → re-encoded and trimmed, as sglang.bench_serving's random dataset); without a tokenizer
they fall back to words (said so in the run's setup). The server's `usage` is what gets summarised.

Range ratio (`--range-ratio X`, `--range-style`):
- `centered` (ours, default): lengths uniform in [L·(1−X), L·(1+X)] — the mean stays L, so a run
  at X=0.5 sends as many tokens as one at X=0. vLLM's `--random-range-ratio` uses the same interval.
- `sglang`: uniform in [X·L, L] as `sglang.bench_serving --random-range-ratio X` (mean (1+X)L/2, so
  sglang's default 0.0 sends about half the requested tokens; sglang issue #7253). Use it only to
  reproduce a sglang run.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsv4ctl.errors import UserError

VOCAB = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will up "
    "other about out many then them these so some her would make like him into time has look two more write "
    "go see number no way could people my than first water been call who oil its now find long down day did "
    "get come made may part over new sound take only little work know place year live me back give most very"
).split()


@dataclass
class Prompt:
    """One request to send: a text (completion) or chat messages, and how many tokens to ask for."""

    index: int
    text: str
    output_len: int
    messages: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def sample_len(rng: random.Random, length: int, ratio: float, style: str) -> int:
    """One length for target `length` under the range-ratio `style` (see the module doc)."""
    if not 0.0 <= ratio <= 1.0:
        raise UserError(f"--range-ratio {ratio} is outside [0, 1]", fix="pass a value such as 0.5")
    if style == "centered":
        lo, hi = round(length * (1 - ratio)), round(length * (1 + ratio))
    elif style == "sglang":
        lo, hi = round(length * ratio), length
    else:
        raise UserError(f"unknown --range-style {style!r}", fix="choose centered or sglang")
    return max(1, rng.randint(max(lo, 1), max(hi, 1)))


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


@dataclass
class TokenSpec:
    """The tokenizer prompts are measured in, its id pool, and the tokens the server adds (template)."""

    tok: Any
    pool: list[int]
    overhead: int = 0


def _text(rng: random.Random, n: int, spec: TokenSpec | None, lead: str = "") -> tuple[str, int | None]:
    """n tokens of random text (n words without a tokenizer); the built token count when known."""
    if spec is None:
        return lead + words(rng, max(n - (1 if lead else 0), 0)), None
    from dsv4ctl.bench.tokens import token_text

    return token_text(spec.tok, spec.pool, rng, max(n, 1))


def random_prompts(num: int, input_len: int, output_len: int, ratio: float = 0.0,
                   style: str = "centered", seed: int = 0, spec: TokenSpec | None = None) -> list[Prompt]:
    """Random ISL/OSL. In words, each prompt starts with its own index so no two share a cacheable
    prefix; random token ids do not share one anyway."""
    rng = random.Random(seed)
    out = []
    for i in range(num):
        n_in, n_out = sample_len(rng, input_len, ratio, style), sample_len(rng, output_len, ratio, style)
        text, built = _text(rng, n_in - (spec.overhead if spec else 0), spec, lead=f"{i} ")
        meta = {"target_input_len": n_in} | ({} if built is None else {"built_input_len": built + spec.overhead})
        out.append(Prompt(i, text, n_out, meta=meta))
    return out


def shared_prefix_prompts(num: int, groups: int, prefix_len: int, input_len: int, output_len: int,
                          seed: int = 0, spec: TokenSpec | None = None) -> list[Prompt]:
    """`groups` system prefixes of `prefix_len` tokens (words), each followed by a unique `input_len` question."""
    rng = random.Random(seed)
    prefixes = [_text(rng, prefix_len, spec, lead=f"Context {g}: ")[0] for g in range(max(groups, 1))]
    out = []
    for i in range(num):
        g = i % len(prefixes)
        question, _ = _text(rng, input_len - (spec.overhead if spec else 0), spec, lead=f"Question {i}: ")
        meta = {"group": g, "target_input_len": prefix_len + input_len}
        out.append(Prompt(i, f"{prefixes[g]}\n{question}", output_len, meta=meta))
    return out


def trace_prompts(path: Path, output_len: int, limit: int | None = None) -> list[Prompt]:
    """A JSONL trace: each line has `prompt` (text) or `messages`, optional `output_len`/`max_tokens`."""
    path = Path(path)
    if not path.is_file():
        raise UserError("trace file not found", where=str(path), fix="pass an existing JSONL file")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, msgs = row.get("prompt", ""), row.get("messages")
        except (json.JSONDecodeError, AttributeError):
            raise UserError("not a JSON object", where=f"{path}:{n}", fix="one JSON object per line") from None
        if not text and not msgs:
            raise UserError("line has neither 'prompt' nor 'messages'", where=f"{path}:{n}",
                            fix='write {"prompt": "..."} or {"messages": [...]}')
        olen = int(row.get("output_len") or row.get("max_tokens") or output_len)
        out.append(Prompt(len(out), text, olen, messages=msgs, meta={"line": n}))
        if limit and len(out) >= limit:
            break
    return out
