"""Sequence: one request's token state, sampling parameters, and stop-string matching (torch-free)."""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count()


class SamplingError(ValueError):
    """A sampling parameter out of range; the server turns it into a 400 naming `param`."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class SamplingParams:
    """temperature 0 means greedy; top_k 0 / top_p 1 mean "off"; seed makes sampling repeatable."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        checks = (
            ("max_tokens", self.max_tokens >= 1, "must be >= 1"),
            ("temperature", 0.0 <= self.temperature <= 2.0, "must be in [0, 2]"),
            ("top_p", 0.0 < self.top_p <= 1.0, "must be in (0, 1]"),
            ("top_k", self.top_k >= 0, "must be >= 0 (0 = off)"),
            ("top_logprobs", 0 <= self.top_logprobs <= 20, "must be in [0, 20]"),
            ("seed", self.seed is None or -(2**63) <= self.seed < 2**64, "must fit in 64 bits"),
            ("stop", len(self.stop) <= 16 and all(0 < len(s) <= 1024 for s in self.stop),
             "at most 16 non-empty strings of at most 1024 characters"),
        )
        for name, ok, msg in checks:
            if not ok:
                raise SamplingError(name, f"{name} {msg} (got {getattr(self, name)!r})")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


class SeqStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(str, enum.Enum):
    STOP = "stop"  # EOS, a stop token id or a stop string
    LENGTH = "length"  # max_tokens or the context length
    ABORT = "abort"  # client went away or server shutdown


@dataclass
class Sequence:
    """A request inside the engine. `num_computed` counts tokens whose KV/state is in the slot.

    Token layout:  [ prompt ........ | output ..... ]
                   ^0        ^num_computed          ^len(token_ids)
    The last sampled token is never computed until the next decode step feeds it.
    """

    prompt_ids: list[int]
    params: SamplingParams
    eos_token_ids: tuple[int, ...] = ()
    seq_id: int = field(default_factory=lambda: next(_ids))
    output_ids: list[int] = field(default_factory=list)
    output_logprobs: list = field(default_factory=list)
    status: SeqStatus = SeqStatus.WAITING
    finish_reason: FinishReason | None = None
    slot: int | None = None
    num_computed: int = 0
    num_cached: int = 0  # prompt tokens reused from a slot's previous sequence (prefix reuse)
    text: str = ""  # decoded output, kept by the engine for stop strings or when keep_text
    keep_text: bool = False
    detok: tuple[str, int, int] = ("", 0, 0)  # incremental detokenization: stable text, window start, read end
    spec_verify_ct: int = 0  # speculative verify steps (accept length = output tokens / this)
    # Prefill/decode disaggregation (dsv4rt.disagg): `hold_slot` keeps the slot out of the pool when the
    # sequence finishes (its state is still being sent or may still be written) until `release_held`;
    # `remote` (decode side) has `.ready` and `.on_admit(seq)`: the prompt's state comes from a prefill
    # worker, so the sequence holds a slot but is not scheduled until that state has arrived.
    hold_slot: bool = False
    remote: Any = None

    @property
    def awaiting_state(self) -> bool:
        return self.remote is not None and not self.remote.ready

    @property
    def token_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def in_prefill(self) -> bool:
        return self.num_computed < len(self.prompt_ids)

    @property
    def is_finished(self) -> bool:
        return self.status is SeqStatus.FINISHED

    def append(self, token_id: int, logprob=None) -> None:
        self.output_ids.append(token_id)
        if self.params.logprobs:
            self.output_logprobs.append(logprob)

    def check_token_stop(self, max_total_tokens: int) -> FinishReason | None:
        """Stop on EOS / stop ids (unless ignore_eos), max_tokens, or the slot's context length."""
        last = self.output_ids[-1]
        if last in self.params.stop_token_ids:
            return FinishReason.STOP
        if not self.params.ignore_eos and last in self.eos_token_ids:
            return FinishReason.STOP
        if len(self.output_ids) >= self.params.max_tokens or self.num_tokens >= max_total_tokens:
            return FinishReason.LENGTH
        return None


def find_stop(text: str, stops: tuple[str, ...], search_from: int = 0) -> int:
    """Index where the earliest stop string starts in `text` (looking from `search_from`), or -1."""
    hits = [i for s in stops if (i := text.find(s, search_from)) >= 0]
    return min(hits) if hits else -1


def safe_text_end(text: str, stops: tuple[str, ...]) -> int:
    """How much of `text` may be streamed now: hold back a tail that could still grow into a stop
    string, and a trailing U+FFFD (an incomplete UTF-8 sequence the next token will finish)."""
    end = len(text.rstrip("\ufffd"))
    hold = 0
    for s in stops:
        hold = max([hold] + [k for k in range(1, min(len(s), end + 1)) if text[end - k : end] == s[:k]])
    return end - hold
