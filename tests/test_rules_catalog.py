"""The registry is well formed and docs/rules.md is generated from it."""

from __future__ import annotations

import re
from pathlib import Path

from dsv4ctl.validate import RULES, rule_catalog_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "rules.md"


def test_rules_md_is_current():
    assert DOC.read_text(encoding="utf-8") == rule_catalog_markdown(), (
        "docs/rules.md is stale: run `dsv4ctl rules --write`")


def test_every_rule_is_documented():
    for r in RULES.values():
        assert re.fullmatch(r"[A-Z0-9]+(-[A-Z0-9]+)+", r.id), r.id
        assert r.severity in ("error", "warning", "info")
        assert len(r.doc) > 60, f"{r.id}: doc too short"
        assert r.fix and r.title, r.id
        assert f"### {r.id}" in rule_catalog_markdown()


def test_issue_rule_ids_exist():
    for rid in ("DEEPEP-DISPATCH-OVERFLOW", "WEIGHTS-EXCEED-HBM", "KV-NO-ROOM", "KV-CAPACITY"):
        assert rid in RULES
