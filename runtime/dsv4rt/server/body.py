"""Reading a request body with bounds: size, JSON nesting depth, integer range, no NaN/Infinity.

One home for the class "input the parsers below us cannot take": the chat encoder (Rust/serde)
overflows on integers beyond 64 bits, torch on seeds beyond them, Python's JSON parser recurses on
deep nesting. Every such body is refused here with an OpenAI-shaped 400/413, whatever the field.
"""

from __future__ import annotations

import json

from dsv4rt.server.protocol import INT_MAX, INT_MIN, MAX_BODY_BYTES, MAX_JSON_DEPTH, APIError


async def read_bounded(request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refusing (413) more than `limit` bytes before reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> APIError:
    return APIError(413, f"request body is larger than {limit} bytes", code="request_too_large")


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes):
    """JSON -> Python, or a 400 naming why; then the depth and integer checks."""
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise APIError(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise APIError(400, f"request body is not valid JSON: {e}") from None
    check_values(body)
    return body


def check_values(body) -> None:
    """Walk the parsed body iteratively (no recursion to exhaust): depth <= MAX_JSON_DEPTH, every
    integer inside the 64-bit range. The error names the path of the first offender."""
    stack = [(body, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise APIError(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels", param=path or None)
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
            raise APIError(400, f"{path}: integer of {value.bit_length()} bits is outside the 64-bit range",
                           param=path or None)
