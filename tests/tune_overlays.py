"""Tuned overlays for tests: a complete one (evidence included) as `dsv4ctl propose` writes it."""

from __future__ import annotations

from pathlib import Path

import yaml


def overlay(when: dict, keys: dict, baseline: dict | None = None, base_scores=(10.0, 10.2),
            tuned_scores=(12.0, 12.1), **evidence) -> dict:
    ev = {"objective": "throughput", "unit": "tok/s/GPU", "slo": {"limits_ms": {"tpot": 50.0}, "percentile": 90.0},
          "workload": {"workload": {"workload": "random"}, "concurrencies": [8]}, "engine": "sglang",
          "engine_version": "0.5.23", "date": "2026-12-02T00:00:00Z", "tune_dir": "runs/tune/x", "digest": "0" * 64,
          "baseline_scores": list(base_scores), "tuned_scores": list(tuned_scores), **evidence}
    return {"when": when, "keys": keys, "baseline": baseline if baseline is not None else {k: None for k in keys},
            "evidence": ev}


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
