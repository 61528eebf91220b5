"""The rule registry: each rule is a record (id, severity, doc, fix template) plus one small pure
check function. Rules never mutate the plan and never import torch; they read a `Ctx` built once per
plan so the hardware profile, variant facts and memory budget are computed a single time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from dsv4ctl.schema.finding import Finding, Severity


@dataclass(frozen=True)
class Hit:
    """What a check returns when its rule fires: the values it read (they fill the fix template)
    and the sentence saying what is wrong."""

    message: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    title: str
    doc: str
    fix: str  # a str.format template over the Hit's values, so the fix names real numbers
    check: Callable[[Any], Hit | Iterable[Hit] | None]
    theme: str

    def run(self, ctx) -> list[Finding]:
        out = self.check(ctx)
        if out is None:
            return []
        hits = [out] if isinstance(out, Hit) else list(out)
        return [self._finding(h) for h in hits]

    def _finding(self, hit: Hit) -> Finding:
        try:
            fix = self.fix.format(**hit.values)
        except (KeyError, IndexError, ValueError):  # a template/value mismatch must not hide the finding
            fix = self.fix
        values = {k: v for k, v in hit.values.items() if _plain(v)}
        return Finding(rule=self.id, severity=self.severity, message=hit.message, fix=fix, values=values)


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool, list, tuple))


RULES: dict[str, Rule] = {}


def rule(id: str, severity: Severity, title: str, fix: str):
    """Register the decorated check. The docstring of the check is the rule's documentation, so the
    catalog and the code cannot drift apart."""

    def deco(fn):
        if id in RULES:
            raise RuntimeError(f"duplicate rule id {id}")
        doc = " ".join((fn.__doc__ or "").split())
        theme = fn.__module__.rsplit(".", 1)[-1]
        RULES[id] = Rule(id=id, severity=severity, title=title, doc=doc, fix=fix, check=fn, theme=theme)
        return fn

    return deco
