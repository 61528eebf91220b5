"""What `bench` refuses before it sends anything: options that would run nothing (or forever), a
run directory it cannot write, a resume that has nothing to resume, and a resume that would mix two
different workloads in one requests.jsonl. Each is one UserError line (exit 2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from dsv4ctl.bench import records as rec_io
from dsv4ctl.errors import UserError

# (option, argument key, test, what it must be). None means "not given" and always passes.
_POSITIVE = (lambda v: v >= 1, "at least 1")
_NON_NEGATIVE = (lambda v: v >= 0, "0 or more")
_SECONDS = (lambda v: v > 0 and math.isfinite(v), "a positive number of seconds")
_FRACTION = (lambda v: 0 <= v <= 1, "between 0 and 1")
COMMON = (("--concurrency", "concurrency", *_POSITIVE), ("--timeout", "timeout", *_SECONDS),
          ("--max-error-rate", "max_error_rate", *_FRACTION))
LOAD = COMMON + (
    ("--num-prompts", "num_prompts", *_POSITIVE), ("--input-len", "input_len", *_POSITIVE),
    ("--output-len", "output_len", *_POSITIVE), ("--warmup", "warmup", *_NON_NEGATIVE),
    ("--request-rate", "request_rate", lambda v: v > 0 and math.isfinite(v), "a positive rate (requests/s)"),
    ("--range-ratio", "range_ratio", *_FRACTION), ("--prefix-groups", "prefix_groups", *_POSITIVE),
    ("--prefix-len", "prefix_len", *_NON_NEGATIVE), ("--gpus", "gpus", *_POSITIVE),
)
ACCURACY = COMMON + (
    ("--repeats", "repeats", *_POSITIVE), ("--limit", "limit", *_POSITIVE), ("--shots", "shots", *_NON_NEGATIVE),
    ("--max-tokens", "max_tokens", *_POSITIVE), ("--temperature", "temperature", lambda v: 0 <= v <= 2, "in [0, 2]"),
    ("--min-accuracy", "min_accuracy", *_FRACTION),
)
# setup.json keys that define which requests a run sends; a resume must send the same ones.
WORKLOAD_KEYS = ("workload", "num_prompts", "input_len", "output_len", "range_ratio", "range_style", "seed",
                 "trace", "prefix_groups", "prefix_len", "request_rate", "ignore_eos", "api", "model", "extra_body")


def check_args(a: Any, rules: tuple[tuple[str, str, Callable[[Any], bool], str], ...]) -> None:
    """`a`: the command's options (LoadOptions / AccuracyOptions)."""
    for flag, key, ok, what in rules:
        value = getattr(a, key, None)
        if value is not None and not ok(value):
            raise UserError(f"{flag} must be {what}, got {value}", where=flag, fix=f"pass {flag} {what}")


def check_percentiles(text: str) -> None:
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        values = [float("nan")]
    if not all(0 < v < 100 for v in values):
        raise UserError(f"bad --percentiles {text!r}", where="--percentiles", fix="write e.g. --percentiles 50,90,99")


def check_ladder(concs: list[int | None]) -> None:
    bad = [c for c in concs if c is not None and c < 1]
    if bad:
        raise UserError(f"--sweep values must be at least 1, got {bad[0]}", where="--sweep", fix="e.g. --sweep 1,8,64")


def ensure_writable(out: Path) -> None:
    """Create the run directory now, so /proc/..., a file in the way or a read-only disk is one line
    before any request is sent (not a traceback after the first result)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write the run directory ({exc.strerror or exc})", where=str(out),
                        fix="pass --out a directory you can write") from None


def check_resumable(out: Path, resume: bool) -> None:
    if resume and not (out / rec_io.REQUESTS_FILE).is_file():
        raise UserError("nothing to resume: no requests.jsonl here", where=str(out),
                        fix="drop --resume to start a new run, or pass the --out of the run to continue")


def resume_setup(out: Path, setup: dict[str, Any], resume: bool, force: bool) -> dict[str, Any]:
    """The setup to record. Resuming with a different workload is refused unless --force, and a
    forced mix is written into setup.json (`forced_resume`) so the summary cannot hide it."""
    path = out / rec_io.SETUP_FILE
    if not resume or not path.is_file():
        return setup
    try:
        before = rec_io.read_json(path)
    except (OSError, ValueError):
        before = {}
    before = before if isinstance(before, dict) else {}
    diffs = {k: [before[k], setup.get(k)] for k in WORKLOAD_KEYS if k in before and before[k] != setup.get(k)}
    if diffs and not force:
        shown = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in diffs.items())
        raise UserError(f"--resume with a different workload ({shown}) would mix two runs", where=str(out),
                        fix="resume with the same options, use a new --out, or pass --force (recorded in setup.json)")
    forced = list(before.get("forced_resume") or []) + ([diffs] if diffs else [])
    return {**setup, "forced_resume": forced} if forced else setup
