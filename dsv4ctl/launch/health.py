"""Readiness: /health answering 200 is not enough (SGLang answers before the first forward works),
so a server counts as ready only after one real completion returns the expected model name and a
non-empty answer."""

from __future__ import annotations

import math
import time
from typing import Callable

from dsv4ctl.errors import UserError


class NotReady(Exception):
    """The server did not become ready in time, or answered wrongly."""


def health_ok(base_url: str, timeout_s: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{base_url}/health", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_health(base_url: str, deadline: float, tick: Callable[[], None], poll_s: float = 0.25) -> None:
    """Poll /health until 200. `tick` runs between polls: it updates the display and raises when a
    child died, so a crash is reported at once instead of after the timeout."""
    while True:
        tick()
        if health_ok(base_url):
            return
        if time.monotonic() >= deadline:
            raise NotReady(f"{base_url}/health did not answer 200 in time")
        time.sleep(poll_s)


def check_completion(base_url: str, model: str, api_key: str | None, timeout_s: float = 120.0) -> str:
    """Send one real /v1/completions request; return the text. Raises NotReady on a wrong answer.
    A 503 is retried until the timeout: sglang-router answers /health before it has registered its
    workers, and 503s ("no prefill workers available") until then."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            resp = httpx.post(f"{base_url}/v1/completions", json=body, headers=headers,
                              timeout=max(deadline - time.monotonic(), 1.0))
        except httpx.HTTPError as exc:
            raise NotReady(f"test request to {base_url} failed: {exc}") from exc
        if resp.status_code != 503 or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if resp.status_code != 200:
        raise NotReady(f"test request returned HTTP {resp.status_code}: {resp.text[:200]}")
    return _completion_text(resp.json(), model)


def _completion_text(data: dict, model: str) -> str:
    if data.get("model") != model:
        raise NotReady(f"server answers as model {data.get('model')!r}, expected {model!r} "
                       "(check --served-model-name)")
    choices = data.get("choices") or [{}]
    text = choices[0].get("text") or ""
    # A random tiny model may sample a whitespace or special token first; generated tokens still count.
    generated = (data.get("usage") or {}).get("completion_tokens", 0)
    if not text and not generated:
        raise NotReady("test request returned an empty completion")
    return text


def wait_until(deadline: float) -> float:
    """Seconds left until `deadline` (at least a little, so the last request can still run)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise NotReady("timed out")
    return max(left, 1.0)


def require_seconds(value: float, flag: str, allow_zero: bool = False) -> None:
    """A finite number of seconds (> 0, or >= 0 where allowed): NaN or inf would wait forever."""
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and math.isfinite(value)):
        what = "0 or more" if allow_zero else "positive"
        raise UserError(f"{flag} must be a finite, {what} number of seconds, got {value}", where=flag,
                        fix=f"pass seconds, e.g. {flag} 10")


def require_positive_timeout(timeout_s: float) -> None:
    require_seconds(timeout_s, "--timeout")
