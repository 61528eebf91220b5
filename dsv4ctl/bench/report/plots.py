"""PNG plots: latency vs throughput across the sweep, TTFT/ITL distributions, tok/s/GPU vs tok/s/user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsv4ctl.bench.report.rows import get, points


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _line(path: Path, xs, ys, labels, xlabel: str, ylabel: str, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for y, label in zip(ys, labels):
        ax.plot(xs, y, marker="o", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sweep_plots(summary: dict[str, Any], out: Path) -> list[Path]:
    pts = points(summary)
    thr = [p["output_throughput"] for p in pts]
    paths = [_line(out / "latency_vs_throughput.png", thr,
                   [[get(p, "ttft_ms.median") for p in pts], [get(p, "tpot_ms.median") for p in pts]],
                   ["TTFT p50", "TPOT p50"], "output tokens/s", "ms", "Latency vs throughput")]
    per_user = [p.get("output_throughput_per_user") or 0 for p in pts]
    ys, ylabel, title = throughput_axis(pts)
    paths.append(_line(out / "per_gpu_vs_per_user.png", per_user, [ys], ["sweep"],
                       "tokens/s per user", ylabel, f"Throughput {title} vs per user"))
    return paths


def throughput_axis(pts: list[dict[str, Any]]) -> tuple[list[float], str, str]:
    """(values, y label, title part): per GPU when every point has a GPU count, else the whole
    server's rate, labelled as such (a CPU server has 0 GPUs: nothing to divide by)."""
    if all(p.get("output_throughput_per_gpu") for p in pts):
        return [p["output_throughput_per_gpu"] for p in pts], "tokens/s per GPU", "per GPU"
    return [p["output_throughput"] for p in pts], "output tokens/s (whole server, no GPU count)", "of the server"


def distributions(records: list[dict[str, Any]], out: Path) -> Path:
    plt = _plt()
    ok = [r for r in records if r.get("ok") and r.get("phase", "measure") == "measure"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].hist([r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None], bins=40)
    axes[0].set(title="TTFT", xlabel="ms", ylabel="requests")
    axes[1].hist([v for r in ok for v in r.get("itl_ms") or ()], bins=60)
    axes[1].set(title="ITL", xlabel="ms", ylabel="gaps")
    fig.tight_layout()
    path = out / "distributions.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
