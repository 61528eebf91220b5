"""requests.jsonl: one line per finished request, appended and flushed within 0.2 s.

The summary is always derived from this file, so a crash or Ctrl-C loses at most the requests that
were still in flight; `--resume` reads it back and skips the indices already recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from dsv4ctl.bench import fastjson

REQUESTS_FILE = "requests.jsonl"
SUMMARY_FILE = "summary.json"
SETUP_FILE = "setup.json"


class RecordWriter:
    """Append-only JSONL writer. A line reaches the OS at most `flush_s` after `write` (a timer on the
    running event loop; outside one, at once) and at `close`, which the context manager runs on every
    exit path (the end, an error, Ctrl-C). Flushing per request cost the load generator's one core a
    system call per request at hundreds of requests/s."""

    def __init__(self, run_dir: Path, flush_s: float = 0.2):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / REQUESTS_FILE
        self.flush_s = flush_s
        self._fh = open(self.path, "ab", buffering=1 << 20)
        self._last = time.perf_counter()
        self._timer: asyncio.TimerHandle | None = None

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(fastjson.dumps(record) + b"\n")
        waited = time.perf_counter() - self._last
        if waited >= self.flush_s:
            return self.flush()
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop to wake us: flush now
                return self.flush()
            self._timer = loop.call_later(self.flush_s - waited, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._fh.closed:
            self._fh.flush()
        self._last = time.perf_counter()

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Every complete line of requests.jsonl; a torn last line (killed mid-write) is skipped."""
    path = Path(run_dir) / REQUESTS_FILE
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def done_keys(run_dir: Path, key=lambda r: r["index"]) -> set:
    """Keys of the requests already recorded as finished (errors are retried on resume)."""
    return {key(r) for r in read_records(run_dir) if r.get("ok") and r.get("phase") != "warmup"}


def drop_failed(run_dir: Path) -> None:
    """Before a resume: keep only successful lines, so retried requests are not counted twice."""
    path = Path(run_dir) / REQUESTS_FILE
    keep = [r for r in read_records(run_dir) if r.get("ok")]
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in keep:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename) so a reader never sees half a summary."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
