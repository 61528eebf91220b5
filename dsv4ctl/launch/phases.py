"""Startup phases read from the server logs. The patterns are data: a new engine log line is a new
row here, not new code. A phase only moves forward (a late 'Load weight' line from another rank does
not send the display back)."""

from __future__ import annotations

import re
from pathlib import Path

PHASES = ("starting", "loading weights", "capturing graphs", "warming up", "ready")

# (phase, pattern). SGLang 0.5.x prints "Load weight begin", "Capture cuda graph begin",
# "Uvicorn running on" and "The server is fired up and ready to roll!"; the included runtime prints
# "loading checkpoint", "capturing CUDA graphs" and "Uvicorn running on"; the router prints "Starting router".
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (phase, re.compile(rx, re.IGNORECASE))
    for phase, rx in (
        ("loading weights", r"load(ing)? weight|loading checkpoint|loading model"),
        ("capturing graphs", r"captur(e|ing) (cuda[ -])?graph"),
        ("warming up", r"uvicorn running on|application startup complete|warm(ing)? ?up"),
        ("ready", r"fired up and ready to roll|starting router|server is ready"),
    )
)


def phase_of(line: str) -> str | None:
    """The phase a log line announces, or None."""
    for phase, rx in PATTERNS:
        if rx.search(line):
            return phase
    return None


class PhaseTracker:
    """Follows one log file incrementally and keeps the furthest phase seen."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.offset = 0
        self.phase = PHASES[0]

    def update(self) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return self.phase
        # Only consume whole lines so a line split across two reads is still matched.
        cut = chunk.rfind(b"\n") + 1
        self.offset += cut
        for line in chunk[:cut].decode(errors="replace").splitlines():
            self._advance(phase_of(line))
        return self.phase

    def _advance(self, phase: str | None) -> None:
        if phase and PHASES.index(phase) > PHASES.index(self.phase):
            self.phase = phase


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log (what a failure report shows)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
