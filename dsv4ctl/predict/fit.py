"""Fit the constants of constants.yaml `fitted` on calibration rows (scipy least squares on the log
of predicted / measured, within each constant's lo/hi), and the leave-one-hardware-out check: fit
on one GPU's rows, measure the error on the other's."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dsv4ctl.predict.calibration import Row, errors, median_abs, predict_row, rows
from dsv4ctl.predict.constants import FITTED, K, bounds, load_constants


@dataclass(frozen=True)
class FitResult:
    k: K
    train: tuple[Row, ...]
    errors: list[float]  # on the training rows

    @property
    def median(self) -> float:
        return median_abs(self.errors)


def _k_from(base: K, x) -> K:
    return base.with_values(**{n: math.exp(v) for n, v in zip(FITTED, x)})


def _residuals(x, base: K, train: tuple[Row, ...]):
    k = _k_from(base, x)
    return [math.log(max(predict_row(r, k), 1e-9) / r.measured) for r in train]


START_POINTS = (0.25, 0.5, 0.75)  # extra starts, as fractions of each log-range (the fit is not convex)


def fit(train: tuple[Row, ...] | None = None, base: K | None = None, from_stored: bool = True) -> FitResult:
    """Least squares in log space, from the stored constants and from fixed points inside the
    bounds; the best end point wins (deterministic). `from_stored=False` starts from the fixed points
    only, so a held-out fit cannot inherit values fitted on the rows it is tested on. A Cauchy loss: the goal is the median error, so
    the few rows the model cannot explain do not pull every constant."""
    from scipy.optimize import least_squares

    train = train if train is not None else rows()
    base = base or load_constants()
    lim = bounds()
    lo = [math.log(max(lim[n][0], 1e-6)) for n in FITTED]
    hi = [math.log(lim[n][1]) for n in FITTED]
    stored = [min(max(math.log(max(getattr(base, n), 1e-6)), a + 1e-9), b - 1e-9) for n, a, b in zip(FITTED, lo, hi)]
    starts = ([stored] if from_stored else []) + [[a + t * (b - a) for a, b in zip(lo, hi)] for t in START_POINTS]
    best = None
    for x0 in starts:
        res = least_squares(_residuals, x0, bounds=(lo, hi), args=(base, train), loss="cauchy", f_scale=0.1)
        if best is None or res.cost < best.cost:
            best = res
    k = _k_from(base, best.x)
    return FitResult(k, train, errors(k, train))


def leave_one_hardware_out(base: K | None = None) -> dict[str, float]:
    """{held-out hw: median abs error on its rows when fitted on the other hardware's rows only}."""
    all_rows = rows()
    out = {}
    for held in sorted({r.hw for r in all_rows}):
        train = tuple(r for r in all_rows if r.hw != held)
        test = tuple(r for r in all_rows if r.hw == held)
        out[held] = median_abs(errors(fit(train, base, from_stored=False).k, test))
    return out


def write_constants(k: K, path=None) -> None:
    """Store fitted values in constants.yaml in place (its comments and sources stay as written)."""
    import re

    from dsv4ctl.predict.constants import CONSTANTS_FILE

    path = path or CONSTANTS_FILE
    text = path.read_text(encoding="utf-8")
    for name in FITTED:
        pattern = re.compile(rf"(\n  {name}:\n    value: )[^\n]*")
        text, hits = pattern.subn(lambda m: m.group(1) + f"{getattr(k, name):.4g}", text)
        if hits != 1:
            raise ValueError(f"{path}: no single '{name}' entry to update")
    path.write_text(text, encoding="utf-8")
    load_constants.cache_clear()
