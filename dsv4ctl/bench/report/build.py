"""Write every report file of a run directory from its summary.json and requests.jsonl."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from dsv4ctl.bench.records import SUMMARY_FILE, read_json, read_records
from dsv4ctl.bench.report.text import to_csv, to_markdown


def write_reports(run_dir: Path, plots: bool = True) -> list[Path]:
    """summary.csv, report.md, plots/*.png (load runs) and report.html with the plots inlined."""
    run_dir = Path(run_dir)
    summary = read_json(run_dir / SUMMARY_FILE)
    (run_dir / "summary.csv").write_text(to_csv(summary))
    (run_dir / "report.md").write_text(to_markdown(summary, title=run_dir.name))
    pngs: list[Path] = []
    if plots and summary.get("kind") != "accuracy":
        from dsv4ctl.bench.report.plots import distributions, sweep_plots

        out = run_dir / "plots"
        out.mkdir(exist_ok=True)
        pngs = sweep_plots(summary, out) + [distributions(list(read_records(run_dir)), out)]
    (run_dir / "report.html").write_text(to_html(summary, pngs, run_dir.name))
    return [run_dir / "summary.csv", run_dir / "report.md", run_dir / "report.html", *pngs]


STYLE = "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border:1px solid #ccc}</style>"


def page(title: str, body: str) -> str:
    """A self-contained HTML document (no external assets)."""
    return f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>{STYLE}{body}"


def section(summary: dict[str, Any], pngs: list[Path], title: str, level: int = 1) -> str:
    """One run: its table as HTML, its PNGs as data URIs, its setup."""
    from dsv4ctl.bench.report.rows import table_rows

    head, rows = table_rows(summary)
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    imgs = "".join(f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
                   for p in pngs)
    setup = html.escape(str(summary.get("setup", {})))
    return (f"<h{level}>{html.escape(title)}</h{level}><table><tr>{th}</tr>{trs}</table>{imgs}"
            f"<h{level + 1}>Setup</h{level + 1}><pre>{setup}</pre>")


def to_html(summary: dict[str, Any], pngs: list[Path], title: str) -> str:
    """One file, no external assets: the Markdown table as HTML and the PNGs as data URIs."""
    return page(title, section(summary, pngs, title))
