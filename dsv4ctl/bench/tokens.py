"""Prompt lengths in tokens of the served model's tokenizer, and the server's context limit.

Prompts are built the way `sglang.bench_serving`'s random dataset builds them: random token ids →
text → re-encoded and trimmed (or topped up) until the text is the asked number of tokens. Ids are
drawn from a pool of ids whose text re-encodes to that same single id (no special tokens, no broken
UTF-8), so a few rounds converge. The chat template's own tokens are measured once against the
server (`template_overhead`) and taken off the asked length, so the server's `usage.prompt_tokens`
is what was asked.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsv4ctl.errors import UserError

POOL_SAMPLE = 8192  # ids checked for the pool: enough variety, bounded start-up on 128k vocabularies


@dataclass
class Tok:
    """The few tokenizer operations a workload needs, over `tokenizers` or `transformers`."""

    ref: str
    encode: Any  # str -> list[int] (no special tokens added)
    decode: Any  # list[int] -> str
    vocab_size: int
    special: frozenset[int]


def load_tokenizer(ref: str | Path) -> Tok:
    """A local checkpoint folder with tokenizer.json (the `tokenizers` package), else anything
    `transformers.AutoTokenizer` loads (a folder or a hub repo id)."""
    path = Path(ref)
    if (path / "tokenizer.json").is_file():
        try:
            from tokenizers import Tokenizer
        except ImportError:
            Tokenizer = None
        if Tokenizer is not None:
            t = Tokenizer.from_file(str(path / "tokenizer.json"))
            special = frozenset(t.token_to_id(s.content) for s in t.get_added_tokens_decoder().values())
            return Tok(str(ref), lambda s: t.encode(s, add_special_tokens=False).ids,
                       lambda ids: t.decode(ids, skip_special_tokens=False), t.get_vocab_size(), special)
    try:
        from transformers import AutoTokenizer

        t = AutoTokenizer.from_pretrained(str(ref), trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - missing package, no network, not a tokenizer: one message
        raise UserError(f"cannot load the tokenizer {str(ref)!r}: {str(exc)[:160]}", where="--tokenizer",
                        fix="pass --tokenizer with the served model's local folder (tokenizer.json inside)") from None
    return Tok(str(ref), lambda s: t.encode(s, add_special_tokens=False), t.decode, len(t),
               frozenset(t.all_special_ids))


def id_pool(tok: Tok, seed: int = 0) -> list[int]:
    """Ids whose decoded text encodes back to exactly themselves (a sample of the vocabulary)."""
    ids = [i for i in range(tok.vocab_size) if i not in tok.special]
    if len(ids) > POOL_SAMPLE:
        ids = random.Random(seed).sample(ids, POOL_SAMPLE)
    pool = [i for i in ids if tok.encode(tok.decode([i])) == [i]]
    if not pool:
        raise UserError(f"the tokenizer {tok.ref!r} has no ids that survive a decode/encode round trip",
                        where="--tokenizer", fix="pass the served model's tokenizer")
    return pool


def token_text(tok: Tok, pool: list[int], rng: random.Random, n: int) -> tuple[str, int]:
    """(text, its token count): random ids → text → re-encode, trim or top up, up to 8 rounds."""
    ids = [rng.choice(pool) for _ in range(n)]
    text, got = "", []
    for _ in range(8):
        text = tok.decode(ids)
        got = tok.encode(text)
        if len(got) == n:
            break
        ids = got[:n] if len(got) > n else got + [rng.choice(pool) for _ in range(n - len(got))]
    return text, len(got)


def find_tokenizer(given: str | None, found: dict[str, Any]) -> str | None:
    """--tokenizer, else the model path of the plan / run directory when it is a local folder."""
    if given:
        return given
    path = found.get("model_path")
    return path if path and Path(path).is_dir() else None


def _get_json(url: str, api_key: str | None, body: dict | None = None) -> dict:
    import urllib.request

    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {api_key}"} if api_key else {})
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=60) as resp:
        return json.load(resp)


def server_context(base_url: str, api_key: str | None) -> int | None:
    """`max_model_len` of the first model in /v1/models (SGLang, vLLM and the included runtime)."""
    try:
        card = _get_json(base_url.rstrip("/") + "/v1/models", api_key)["data"][0]
    except Exception:  # noqa: BLE001 - an endpoint without it: the plan's value, or no check
        return None
    value = card.get("max_model_len") or card.get("context_length")
    return int(value) if isinstance(value, int) else None


def template_overhead(ep, tok: Tok) -> int:
    """Prompt tokens the server adds around a text (chat template, BOS): usage minus our count."""
    text = "Say hello."
    body = {"model": ep.model, "max_tokens": 1, "stream": False}
    body |= {"messages": [{"role": "user", "content": text}]} if ep.api == "chat" else {"prompt": text}
    body |= ep.extra_body
    path = "/v1/chat/completions" if ep.api == "chat" else "/v1/completions"
    try:
        usage = _get_json(ep.base_url.rstrip("/") + path, ep.api_key, body).get("usage") or {}
    except Exception:  # noqa: BLE001 - the load run's own preflight reports a broken endpoint
        return 0
    used = usage.get("prompt_tokens")
    return max(int(used) - len(tok.encode(text)), 0) if isinstance(used, int) else 0


def check_fits(context: int | None, input_lens: list[int], output_lens: list[int], source: str) -> None:
    """Refuse before sending anything when the longest prompt plus its output cannot fit."""
    if not context or not input_lens:
        return
    worst = max(i + o for i, o in zip(input_lens, output_lens))
    if worst > context:
        raise UserError(f"the longest request needs {worst} tokens (input + output) but the server's context "
                        f"is {context} ({source})", where="--input-len/--output-len",
                        fix=f"lower --input-len/--output-len (or --range-ratio) so they sum to at most {context}")


def check_template(asked: list[int], built: list[int]) -> None:
    """A prompt cannot be shorter than what the server's template adds around it: refuse, do not
    silently send longer prompts than asked."""
    over = [(a, b) for a, b in zip(asked, built) if b > a + 1]
    if over:
        a, b = min(over)
        raise UserError(f"--input-len {a} is shorter than the server's own prompt tokens for one message "
                        f"({b} with the chat template)", where="--input-len",
                        fix="raise --input-len, or use --api completions (a raw prompt, no template)")
