"""The workload a prediction is for: prompt and output lengths and the concurrency ladder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    isl: int
    osl: int
    concurrencies: tuple[int, ...]


def parse_concurrency(text: str) -> tuple[int, ...]:
    """'1,4,16' → (1, 4, 16); anything else is a one-line UserError naming --concurrency."""
    from dsv4ctl.errors import UserError

    try:
        values = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise UserError(f"bad concurrency list '{text}'", where="--concurrency",
                        fix="give positive integers separated by commas, e.g. 1,16,64,256")
    return values


def make_workload(isl: int, osl: int, concurrency: str) -> Workload:
    from dsv4ctl.errors import UserError

    for name, v in (("--isl", isl), ("--osl", osl)):
        if v < 1:
            raise UserError(f"{name} must be at least 1 (got {v})", where=name, fix="give a token count")
    return Workload(isl=isl, osl=osl, concurrencies=parse_concurrency(concurrency))
