"""Rich table, CSV and Markdown renderings of a summary."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from dsv4ctl.bench.report.rows import table_rows


def rich_table(summary: dict[str, Any], title: str = "bench"):
    from rich.table import Table

    head, rows = table_rows(summary)
    table = Table(title=title)
    for h in head:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(*r)
    return table


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
