"""Rich table, CSV and Markdown renderings of a summary."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from dsv4ctl.bench.report.rows import table_rows


# Dropped first to last until the table fits the terminal (80 columns when piped); the full set is
# in summary.json / summary.csv / `--format json`.
DROP_ORDER = ["out tok/s/GPU", "goodput", "failed", "TPOT p50 ms", "tok/s/user", "E2E p50 ms", "TTFT p99 ms",
              "stderr", "repeats", "ok"]


def rich_table(summary: dict[str, Any], title: str = "bench"):
    """The summary's table, fitted to the terminal: columns empty in every row go first."""
    from dsv4ctl.console import fit_table

    head, rows = table_rows(summary)
    keep = [i for i, _ in enumerate(head) if any(r[i] != "-" for r in rows)] or list(range(len(head)))
    head, rows = [head[i] for i in keep], [[r[i] for i in keep] for r in rows]
    return fit_table(head, rows, title=title, drop_order=DROP_ORDER, justify="right")


def to_csv(summary: dict[str, Any]) -> str:
    head, rows = table_rows(summary)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head)
    w.writerows(rows)
    return buf.getvalue()


def _inline(value: Any) -> str:
    # nested setup (client environment, the deployment) as JSON: it reads the same as summary.json
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)


def to_markdown(summary: dict[str, Any], title: str = "Benchmark") -> str:
    head, rows = table_rows(summary)
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    setup = summary.get("setup") or {}
    if setup:
        lines += ["", "## Setup", ""] + [f"- **{k}**: `{_inline(v)}`" for k, v in setup.items()]
    return "\n".join(lines) + "\n"
