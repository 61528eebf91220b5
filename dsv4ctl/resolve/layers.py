"""A value store that remembers, per key, every layer that set it (for provenance and `explain`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Layered:
    values: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    # (key or "env.NAME", layer label, value) in the order the layers were applied
    history: list[tuple[str, str, Any]] = field(default_factory=list)

    def set(self, key: str, value: Any, layer: str) -> None:
        self.values[key] = value
        self.provenance[key] = layer
        self.history.append((key, layer, value))

    def set_many(self, keys: dict[str, Any], layer: str) -> None:
        for key, value in keys.items():
            self.set(key, value, layer)

    def set_env(self, name: str, value: str | None, layer: str) -> None:
        """Set (or with None, remove) an environment variable."""
        if value is None:
            self.env.pop(name, None)
            self.provenance.pop(f"env.{name}", None)
        else:
            self.env[name] = str(value)
            self.provenance[f"env.{name}"] = layer
        self.history.append((f"env.{name}", layer, value))

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def copy(self) -> "Layered":
        return Layered(dict(self.values), dict(self.env), dict(self.provenance), list(self.history))
