"""JSON for the load generator's hot path: orjson when installed (the `bench` extra), else the stdlib.

Both give the same values; orjson is several times cheaper per call, which is what a client sending
hundreds of streams per second from one core pays for every request body, event batch and record."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised when the extra is missing
    _orjson = None

DecodeError = (ValueError,)  # json.JSONDecodeError and orjson.JSONDecodeError are both ValueErrors


def loads(data: bytes | str) -> Any:
    return _orjson.loads(data) if _orjson is not None else json.loads(data)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON bytes (no spaces after separators)."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def backend() -> str:
    return "orjson" if _orjson is not None else "json"
