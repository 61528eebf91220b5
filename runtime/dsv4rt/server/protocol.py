"""OpenAI wire schemas for /v1/completions, /v1/models and errors (pydantic, strict types).

Chat requests are parsed and validated by deepseek-recipe (server/chat.py); only the sampling
extensions it does not know (top_k, ignore_eos, stop_token_ids) are read here.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# What a request may hold, whatever the field: the chat encoder (serde) and torch take 64-bit
# integers at most; a JSON nested deeper than any OpenAI request is an attack on the parser.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
SEED_MIN, SEED_MAX = INT_MIN, INT_MAX  # torch.Generator.manual_seed's range
TOKEN_ID_MAX = 2**31 - 1
MAX_BODY_BYTES = 32 << 20
MAX_JSON_DEPTH = 32


class APIError(Exception):
    """An OpenAI-shaped error: {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.param, self.code = status, type_, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingExtras(BaseModel):
    """Non-OpenAI sampling fields both endpoints accept (vLLM/SGLang spelling)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    top_k: int = Field(default=0, ge=-1, le=TOKEN_ID_MAX)  # -1 and 0 both mean "off"
    ignore_eos: bool = False
    stop_token_ids: list[Annotated[int, Field(ge=0, le=TOKEN_ID_MAX)]] | None = Field(default=None, max_length=256)


class CompletionRequest(SamplingExtras):
    model: str
    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1, le=INT_MAX)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, verify_ct: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        **spec_usage(completion_tokens, verify_ct),
    }


def spec_usage(completion_tokens: int, verify_ct: int) -> dict[str, Any]:
    """Speculative decoding's numbers as SGLang reports them: verify steps, and the accept length as
    completion tokens per verify step. Empty without speculative decoding."""
    if not verify_ct:
        return {}
    return {"spec_verify_ct": verify_ct, "spec_accept_length": round(completion_tokens / verify_ct, 4)}


def completion_object(rid: str, model: str, choices: list[dict], usage_: dict | None) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": now(), "model": model,
            "choices": choices, "usage": usage_}


def completion_choice(text: str, finish_reason: str | None, logprobs: dict | None = None) -> dict:
    return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def model_list(model: str, max_model_len: int) -> dict[str, Any]:
    card = {"id": model, "object": "model", "created": now(), "owned_by": "dsv4rt", "max_model_len": max_model_len}
    return {"object": "list", "data": [card]}
